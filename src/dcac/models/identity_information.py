"""How much identity information the classifier's probabilities carry, for logging.

DCAC conditions the teacher on ``c = p P`` with ``p = softmax(z / tau)``: when ``p`` is nearly uniform, ``c`` is
nearly the same vector for every image and no identity correlations reach the teacher. Two batch means say
where ``p`` stands: its entropy (``ln N`` = uniform, 0 = one-hot) and the probability it gives the true identity
(``1 / N`` = chance, 1 = certain).
"""

from __future__ import annotations

import torch


@torch.no_grad()
def identity_information(probabilities: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """``p_entropy`` (mean entropy of each row, in nats) and ``p_true`` (mean probability of each row's label)."""
    if probabilities.ndim != 2 or labels.shape != probabilities.shape[:1]:
        raise ValueError(
            f"need B x N probabilities and B labels, got {tuple(probabilities.shape)} and {tuple(labels.shape)}"
        )
    p = probabilities.float()
    entropy = -(p * p.clamp_min(1e-12).log()).sum(dim=1)
    return {"p_entropy": entropy.mean(), "p_true": p.gather(1, labels.long()[:, None]).mean()}
