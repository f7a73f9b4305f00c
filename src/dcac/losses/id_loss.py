"""Identity classification loss: cross-entropy with label smoothing (the paper's L_id, ε = 0.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def id_loss(logits: torch.Tensor, labels: torch.Tensor, epsilon: float = 0.1) -> torch.Tensor:
    """Mean label-smoothed cross-entropy of ``logits`` (B × N_ids) against integer ``labels`` (B).

    The target puts ``1 − ε + ε/N`` on the true ID and ``ε/N`` elsewhere, which is the
    ``CrossEntropyLabelSmooth`` of the Re-ID literature and exactly PyTorch's ``label_smoothing``.
    Computed in float32 so that half-precision logits under autocast lose nothing in the log-softmax.
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"label smoothing epsilon must lie in [0, 1], got {epsilon}")
    return F.cross_entropy(logits.float(), labels, label_smoothing=epsilon)
