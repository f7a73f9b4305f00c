"""The single-token cross-attention shortcut equals diffusers' standard path, forward and backward."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from dcac.models.lora import add_unet_lora, lora_parameters
from dcac.models.sd_configs import tiny_unet_config
from dcac.models.sd_weights import build_unet
from dcac.models.single_token_attention import SingleTokenCrossAttnProcessor, install_single_token_attention

CONTEXT_DIM = 24


@pytest.fixture(scope="module")
def lora_unet():
    torch.manual_seed(0)
    unet = build_unet(tiny_unet_config(cross_attention_dim=CONTEXT_DIM))
    add_unet_lora(unet, rank=4)
    # Non-zero LoRA everywhere (B = 0 would hide LoRA mistakes on to_v / to_out).
    with torch.no_grad():
        for p in lora_parameters(unet):
            p.normal_(0.0, 0.2)
    return unet


def _run(unet, context_tokens=1):
    """Output and gradients (context, every LoRA parameter) of a scalar loss on the UNet output."""
    g = torch.Generator().manual_seed(7)
    sample = torch.randn(3, 4, 8, 8, generator=g)
    context = torch.randn(3, context_tokens, CONTEXT_DIM, generator=g, requires_grad=True)
    target = torch.randn(3, 4, 8, 8, generator=g)
    unet.zero_grad(set_to_none=True)
    out = unet(sample, torch.tensor([5, 400, 999]), encoder_hidden_states=context).sample
    (out - target).square().mean().backward()
    grads = {
        name: (p.grad if p.grad is not None else torch.zeros_like(p))
        for name, p in unet.named_parameters()
        if p.requires_grad
    }
    return out.detach(), context.grad, grads


def test_unet_with_lora_matches_standard_attention(lora_unet):
    lora_unet.set_attn_processor(AttnProcessor2_0())
    ref_out, ref_context_grad, ref_grads = _run(lora_unet)
    assert install_single_token_attention(lora_unet) == 4
    processors = lora_unet.attn_processors
    assert all(isinstance(p, SingleTokenCrossAttnProcessor) == (".attn2." in name) for name, p in processors.items())
    out, context_grad, grads = _run(lora_unet)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-5)
    torch.testing.assert_close(context_grad, ref_context_grad, rtol=0, atol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=0, atol=1e-5, msg=name)
    # The shortcut is not vacuous: LoRA on the cross-attention values and output does receive gradient.
    assert any(grads[n].abs().sum() > 1e-4 for n in grads if ".attn2.to_v.lora_B" in n)
    assert any(grads[n].abs().sum() > 1e-4 for n in grads if ".attn2.to_out.0.lora_A" in n)


def test_multi_token_context_falls_back_to_standard(lora_unet):
    lora_unet.set_attn_processor(AttnProcessor2_0())
    ref = _run(lora_unet, context_tokens=3)
    install_single_token_attention(lora_unet)
    got = _run(lora_unet, context_tokens=3)
    torch.testing.assert_close(got[0], ref[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(got[1], ref[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("four_d", [True, False])
def test_attention_options_preserved(four_d):
    """Residual connection, output rescaling, cross-attention norm, group norm and 4-D inputs."""
    torch.manual_seed(1)
    attn = Attention(
        query_dim=8,
        cross_attention_dim=6,
        heads=2,
        dim_head=4,
        bias=True,
        residual_connection=True,
        rescale_output_factor=2.0,
        cross_attention_norm="layer_norm",
        norm_num_groups=4 if four_d else None,
    )
    hidden = torch.randn(2, 8, 3, 5) if four_d else torch.randn(2, 15, 8)
    context = torch.randn(2, 1, 6, requires_grad=True)
    attn.set_processor(AttnProcessor2_0())
    ref = attn(hidden, encoder_hidden_states=context)
    (ref_grad,) = torch.autograd.grad(ref.sin().sum(), context)
    attn.set_processor(SingleTokenCrossAttnProcessor())
    out = attn(hidden, encoder_hidden_states=context)
    (grad,) = torch.autograd.grad(out.sin().sum(), context)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-5)
    # With a mask the shortcut steps aside (a mask could block the only key).
    mask = torch.zeros(2, 1)
    torch.testing.assert_close(
        attn(hidden, encoder_hidden_states=context, attention_mask=mask),
        AttnProcessor2_0()(attn, hidden, context, mask),
    )
