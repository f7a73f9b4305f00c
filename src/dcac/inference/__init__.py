"""Using a trained run: feature extraction and search, run reports, activation maps and ONNX export.

The Python entry points are ``dcac.load`` / ``dcac.rank`` (``dcac.api``); the CLI commands live in
``dcac.cli.inference``.  Submodules are imported on use so ``import dcac`` stays light.
"""
