"""The bottom layer: run folders and checkpoints on disk, written atomically.

Training (``dcac.engine``), using a trained model (``dcac.inference``) and loading models (``dcac.models``)
all read and write runs through here; this package imports none of them.
"""
