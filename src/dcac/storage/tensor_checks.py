"""Weights that cannot be right: NaN or infinite values are refused wherever weights enter dcac.

A model with one NaN weight extracts NaN features for every image, and everything after it (ranking,
verification, export checks) computes confident nonsense; stopping at the file names the real cause.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from dcac.storage.errors import CheckpointError


class NonFiniteWeightsError(CheckpointError):
    """A weights file holding NaN or infinite values; the message names the file and a tensor."""


def require_finite(tensors: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Raise ``NonFiniteWeightsError`` naming ``path``, the first bad tensor and how many tensors are bad."""
    bad = {}
    for name, tensor in tensors.items():
        # A finite sum proves every value finite (NaN and inf propagate) in one pass without a temporary; only
        # a non-finite sum (a bad value, or finite values overflowing) is counted exactly.
        if (tensor.is_floating_point() or tensor.is_complex()) and not torch.isfinite(tensor.sum()):
            count = int((~torch.isfinite(tensor)).sum())
            if count:
                bad[name] = (count, tensor.numel())
    if bad:
        name, (count, total) = next(iter(bad.items()))
        others = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
        raise NonFiniteWeightsError(
            f"{path}: '{name}' holds {count} NaN/infinite values of {total}{others}: the weights are damaged "
            "(a diverged training?) and would give NaN features"
        )
