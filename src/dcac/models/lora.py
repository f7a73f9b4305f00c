"""LoRA adaptation of the SD UNet (via peft) and the UNet training-mode switch.

DCAC adapts every attention projection of every transformer block (`to_q`, `to_k`, `to_v`,
`to_out.0` of both the self-attention `attn1` and the cross-attention `attn2`) and the GEGLU input
projection `ff.net.0.proj`. With alpha = 1 the LoRA scale is alpha / r. peft initialises B = 0,
so a freshly added adapter leaves the UNet's output unchanged. peft's `bias="none"` trains no bias.

The official code wraps the bias-free attn1/attn2 `to_q/to_k/to_v` in loralib's `Linear`, whose default
`bias=True` adds a bias that the SD checkpoint does not hold: it stays at its random `nn.Linear`
initialisation, frozen. :func:`add_frozen_qkv_biases` reproduces that (``train.compat=official``).

On the full SD v1.5 UNet this adds 311,616 x r parameters.
"""

from __future__ import annotations

import math
import re

import torch
from diffusers import UNet2DConditionModel
from peft import LoraConfig

from dcac.config.choices import LORA_ALPHA, UNET_TRAINING_MODES

#: Module names (full match) that receive LoRA: attention projections and the GEGLU input projection.
LORA_TARGET_MODULES = (
    r".*transformer_blocks\.\d+\.(?:attn1|attn2)\.(?:to_q|to_k|to_v|to_out\.0)"
    r"|.*transformer_blocks\.\d+\.ff\.net\.0\.proj"
)

#: The bias-free projections that the official LoRA wrapper gives a random frozen bias.
QKV_PROJECTIONS = re.compile(r".*transformer_blocks\.\d+\.(?:attn1|attn2)\.(?:to_q|to_k|to_v)")

_LORA_PARAMETER_MARK = "lora_"


def add_unet_lora(unet: UNet2DConditionModel, rank: int, alpha: float = LORA_ALPHA) -> None:
    """Inject LoRA (scale alpha / rank, B = 0) into the UNet's transformer blocks and freeze the base weights."""
    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    if has_lora(unet):
        raise ValueError("the UNet already has LoRA layers")
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=0.0,
        bias="none",
        init_lora_weights=True,
        target_modules=LORA_TARGET_MODULES,
    )
    unet.add_adapter(config)
    set_unet_training_mode(unet, "lora")


def add_frozen_qkv_biases(unet: torch.nn.Module, generator: torch.Generator) -> int:
    """Give every bias-free attn1/attn2 ``to_q/to_k/to_v`` a frozen bias drawn U(-1/sqrt(in), 1/sqrt(in)).

    That is ``nn.Linear``'s default bias initialisation, which the official code's LoRA layers keep because
    the checkpoint has no such bias. Drawn from ``generator`` in module order; call before :func:`add_unet_lora`
    so that peft wraps the biased layer (the bias is then ``<...>.to_q.base_layer.bias``). Returns the count.
    """
    if has_lora(unet):
        raise ValueError("add the q/k/v biases before the LoRA layers")
    count = 0
    for name, layer in unet.named_modules():
        if not (QKV_PROJECTIONS.fullmatch(name) and isinstance(layer, torch.nn.Linear)) or layer.bias is not None:
            continue
        bound = 1.0 / math.sqrt(layer.in_features)
        bias = torch.empty(layer.out_features, dtype=torch.float32).uniform_(-bound, bound, generator=generator)
        layer.bias = torch.nn.Parameter(bias.to(layer.weight), requires_grad=False)
        count += 1
    return count


def has_lora(unet: torch.nn.Module) -> bool:
    """Whether LoRA layers have been injected into `unet`."""
    return any(_LORA_PARAMETER_MARK in name for name, _ in unet.named_parameters())


def lora_parameters(unet: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The LoRA A/B matrices of `unet`."""
    return [p for name, p in unet.named_parameters() if _LORA_PARAMETER_MARK in name]


def count_lora_parameters(unet: torch.nn.Module) -> int:
    """Number of scalar LoRA parameters in `unet`."""
    return sum(p.numel() for p in lora_parameters(unet))


def set_unet_training_mode(unet: torch.nn.Module, mode: str) -> None:
    """Set which UNet parameters train.

    "lora": only LoRA matrices (they must have been added); "full": every parameter, LoRA
    included if present; "frozen": none.
    """
    if mode not in UNET_TRAINING_MODES:
        raise ValueError(f"unknown UNet training mode {mode!r}; expected one of {UNET_TRAINING_MODES}")
    if mode == "lora" and not has_lora(unet):
        raise ValueError('UNet training mode "lora" needs LoRA layers: call add_unet_lora first')
    for name, parameter in unet.named_parameters():
        if mode == "lora":
            parameter.requires_grad_(_LORA_PARAMETER_MARK in name)
        else:
            parameter.requires_grad_(mode == "full")
