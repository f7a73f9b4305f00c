"""The Python entry points for using a trained model: ``dcac.load`` and ``dcac.rank``.

Example::

    import dcac

    model = dcac.load("runs/demo/dcac", device="cpu")
    gallery = model.extract("path/to/gallery_folder")          # N×D, L2-normalised f_bn
    query = model.extract(["a.jpg", "b.jpg"], after_bn=True)
    indices, distances = dcac.rank(query, gallery, topk=10)    # nearest first, squared Euclidean
    indices, distances = dcac.rank(query, gallery, topk=10, rerank=True)  # k-reciprocal re-ranked
    model = dcac.load("org/name")   # a run pushed with `dcac push` (Hugging Face cache; HF_HUB_OFFLINE honoured)
    answer = dcac.compare("a.jpg", "b.jpg", model)              # after `dcac calibrate`: same person or not
"""

from __future__ import annotations

from pathlib import Path

import torch

from dcac.inference.predictor import ReIDPredictor
from dcac.inference.ranking import rank


def load(run_or_checkpoint: str | Path, device: str | torch.device = "cpu") -> ReIDPredictor:
    """The trained Re-ID model of a run folder (or of its ``reid_model.safetensors``, or a Hub id ``org/name``
    of a pushed run), ready to ``extract``."""
    return ReIDPredictor.from_run(run_or_checkpoint, device=device)


def compare(image_a, image_b, model: ReIDPredictor | str | Path, *, threshold: float | None = None):
    """Whether two images show the same person: distance, threshold and the call (a ``Comparison``).

    ``model`` is a loaded predictor or a run folder. The threshold is the one ``dcac calibrate`` stored in
    the run folder (``verification.json``), unless given.
    """
    from dcac.evaluation.calibration import compare_images

    predictor = model if isinstance(model, ReIDPredictor) else load(model)
    return compare_images(predictor, image_a, image_b, threshold=threshold)


__all__ = ["ReIDPredictor", "compare", "load", "rank"]
