"""Exact shortcut for cross-attention over a single context token.

DCAC feeds the UNet one context token per image. A softmax over one key is exactly 1, so each
head's attention output is the value itself and the whole cross-attention reduces to
``to_out(to_v(c))`` broadcast over every query position: ``to_q``, ``to_k`` (and their LoRA),
the attention scale and the query/key norms have no effect on the result or its gradients.
Skipping them saves the query projection over all positions and the attention itself.

The processor calls the projection modules (never reads their weights), so peft LoRA layers on
``to_v`` / ``to_out`` act as usual. It keeps diffusers' ``Attention`` semantics that do affect
the output (cross-attention norm, 4-D input layout, residual connection, output rescaling) and
hands anything else -- self-attention, an attention mask, more than one context token -- to
the standard ``AttnProcessor2_0``.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0


class SingleTokenCrossAttnProcessor:
    """Attention processor computing single-token cross-attention as ``to_out(to_v(c))``."""

    def __init__(self) -> None:
        self.fallback = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is None or encoder_hidden_states.shape[1] != 1 or attention_mask is not None:
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

        # spatial_norm and group_norm only transform the queries, which cannot change the result.
        residual = hidden_states
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        value = attn.to_out[0](attn.to_v(encoder_hidden_states))
        value = attn.to_out[1](value)

        if hidden_states.ndim == 4:
            batch_size, channels, height, width = hidden_states.shape
            output = value.expand(batch_size, height * width, channels)
            output = output.transpose(-1, -2).reshape(batch_size, channels, height, width)
        else:
            batch_size, positions, _ = hidden_states.shape
            output = value.expand(batch_size, positions, value.shape[-1])

        if attn.residual_connection:
            output = output + residual
        return output / attn.rescale_output_factor


def install_single_token_attention(unet: torch.nn.Module) -> int:
    """Give every cross-attention (``attn2``) of `unet` the single-token processor; returns how many."""
    installed = 0
    for name, module in unet.named_modules():
        if isinstance(module, Attention) and name.rsplit(".", 1)[-1] == "attn2":
            module.set_processor(SingleTokenCrossAttnProcessor())
            installed += 1
    if installed == 0:
        raise ValueError("no cross-attention (attn2) modules found in the UNet")
    return installed
