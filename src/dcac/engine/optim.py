"""Adam with per-group learning rates and the per-epoch warm-up + multi-step schedule of the official DCAC code."""

from __future__ import annotations

from bisect import bisect_right

import torch
from torch import nn

from dcac.config import OptimConfig


def parameter_groups(model: nn.Module, optim: OptimConfig) -> list[dict]:
    """Re-ID side at the base LR; diffusion side (prompts, projection, UNet) at ``lr * diffusion_lr_mult``."""
    reid, diffusion = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (diffusion if name.startswith(("teacher.", "conditioner.")) else reid).append(param)
    groups = [{"params": reid, "lr": optim.lr, "name": "reid"}]
    if diffusion:
        groups.append({"params": diffusion, "lr": optim.lr * optim.diffusion_lr_mult, "name": "diffusion"})
    return groups


def build_optimizer(model: nn.Module, optim: OptimConfig, *, fused: bool = False) -> torch.optim.Adam:
    return torch.optim.Adam(parameter_groups(model, optim), lr=optim.lr, weight_decay=optim.weight_decay, fused=fused or None)


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
        mult = optim.diffusion_lr_mult if group.get("name") == "diffusion" else 1.0
        group["lr"] = optim.lr * mult * factor
    return factor
