"""LoRA adaptation of the SD UNet (via peft) and the UNet training-mode switch.

DCAC adapts every attention projection of every transformer block (`to_q`, `to_k`, `to_v`,
`to_out.0` of both the self-attention `attn1` and the cross-attention `attn2`) and the GEGLU input
projection `ff.net.0.proj`. With alpha = 1 the LoRA scale is alpha / r. peft initialises B = 0,
so a freshly added adapter leaves the UNet's output unchanged. Unlike the official code, no
biases are added to the bias-free q/k/v projections (peft's `bias="none"`).

On the full SD v1.5 UNet this adds 311,616 x r parameters.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from diffusers import UNet2DConditionModel
from peft import LoraConfig

#: Module names (full match) that receive LoRA: attention projections and the GEGLU input projection.
LORA_TARGET_MODULES = (
    r".*transformer_blocks\.\d+\.(?:attn1|attn2)\.(?:to_q|to_k|to_v|to_out\.0)"
    r"|.*transformer_blocks\.\d+\.ff\.net\.0\.proj"
)

UNetTrainingMode = Literal["lora", "full", "frozen"]
UNET_TRAINING_MODES: tuple[str, ...] = get_args(UNetTrainingMode)

_LORA_PARAMETER_MARK = "lora_"


def add_unet_lora(unet: UNet2DConditionModel, rank: int, alpha: float = 1.0) -> None:
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


def has_lora(unet: torch.nn.Module) -> bool:
    """Whether LoRA layers have been injected into `unet`."""
    return any(_LORA_PARAMETER_MARK in name for name, _ in unet.named_parameters())


def lora_parameters(unet: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The LoRA A/B matrices of `unet`."""
    return [p for name, p in unet.named_parameters() if _LORA_PARAMETER_MARK in name]


def count_lora_parameters(unet: torch.nn.Module) -> int:
    """Number of scalar LoRA parameters in `unet`."""
    return sum(p.numel() for p in lora_parameters(unet))


def set_unet_training_mode(unet: torch.nn.Module, mode: UNetTrainingMode) -> None:
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
