"""Adam with per-group learning rates and the per-epoch warm-up + multi-step schedule of the official DCAC code."""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING

import torch

from dcac.config import OptimConfig

if TYPE_CHECKING:
    from dcac.models.dcac import DCAC


def build_optimizer(model: DCAC, optim: OptimConfig, *, fused: bool = False) -> torch.optim.Adam:
    """Adam over the groups the model hands out (its Re-ID and diffusion sides, see ``DCAC.parameter_groups``)."""
    groups = model.parameter_groups(optim.lr, optim.diffusion_lr_mult)
    return torch.optim.Adam(groups, lr=optim.lr, weight_decay=optim.weight_decay, fused=fused or None)


def lr_factor(epoch: int, optim: OptimConfig) -> float:
    """LR multiplier of the 0-based ``epoch``: linear warm-up from ``warmup_factor``, then x``gamma`` per milestone.

    The official code steps its ``WarmupMultiStepLR`` with the 1-based epoch number ``e`` before each epoch, so
    the factor is read at ``e = epoch + 1``: ``warmup_factor (1 - e/W) + e/W`` for ``e < W`` and ``gamma^k`` once
    ``k`` milestones are ``<= e``. With W = 10 and milestones 30, 50 the first epoch trains at 0.19x, the tenth at
    1x, epochs 30-49 at 0.1x and 50-60 at 0.01x.
    """
    e = epoch + 1
    if e < optim.warmup_epochs:
        alpha = e / optim.warmup_epochs
        return optim.warmup_factor * (1 - alpha) + alpha
    return optim.gamma ** bisect_right(sorted(optim.milestones), e)


def set_epoch_lr(optimizer: torch.optim.Optimizer, epoch: int, optim: OptimConfig) -> float:
    """Set every group's LR for ``epoch``; stateless, so a resumed run gets exactly the same schedule."""
    factor = lr_factor(epoch, optim)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return factor
