"""Frozen weights stored in the autocast dtype: the same numbers in half the memory.

Under bf16/fp16 autocast every ``nn.Linear`` and ``nn.Conv2d`` casts its weight and bias to the
low-precision dtype at each call, and autograd keeps that cast copy for the backward pass. For the
frozen base weights of the UNet (860M parameters under LoRA) this costs an fp32 master copy that is
never updated plus a half-precision copy per step. Storing those weights in the autocast dtype once
gives bit-identical forward and backward results (the cast is the same round-to-nearest, done once
instead of every step) and saves both copies. Normalisation layers keep float32 parameters, as
autocast runs them in float32; trainable tensors (LoRA, a fully trained UNet) stay float32 for Adam.
"""

from __future__ import annotations

import torch
from torch import nn

#: Layers whose parameters autocast casts to the low-precision dtype at every call.
AUTOCAST_LOW_PRECISION_LAYERS = (nn.Linear, nn.Conv2d)


def store_frozen_weights_in(module: nn.Module, dtype: torch.dtype) -> None:
    """Cast every frozen Linear/Conv2d of ``module`` to ``dtype`` in place.

    A layer is frozen when none of its own parameters requires a gradient, so a peft LoRA layer's base
    weights are cast and its adapters are not. The model must then only run under autocast to ``dtype``
    (outside it, a float32 input would meet a ``dtype`` weight).
    """
    for layer in module.modules():
        if not isinstance(layer, AUTOCAST_LOW_PRECISION_LAYERS):
            continue
        params = list(layer.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params):
            layer.to(dtype)
