"""dcac.engine: training. The trainer (``trainer.train``), one optimisation step (``train_step``), building
what a step needs and the speed switches (``training_setup``), Adam and the LR schedule (``optim``), exact
resumption (``resume``), the VAE latent cache, the run log, and importing the official code's checkpoints.

Scoring a model on a target dataset is ``dcac.evaluation`` (``targets``, ``classic_splits``, ``calibration``).
"""
