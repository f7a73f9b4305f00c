"""LoRA on the SD UNet: targets, no-op start, scale alpha/r, frozen base, training modes, counts."""

from __future__ import annotations

import pytest
import torch

from dcac.models.lora import (
    add_unet_lora,
    count_lora_parameters,
    lora_parameters,
    set_unet_training_mode,
)
from dcac.models.sd_configs import sd15_unet_config, tiny_unet_config
from dcac.models.sd_weights import build_unet

SD15_LORA_PARAMETERS_PER_RANK = 311_616


def _tiny_unet():
    torch.manual_seed(0)
    return build_unet(tiny_unet_config(cross_attention_dim=24)).eval()


def _forward(unet):
    g = torch.Generator().manual_seed(3)
    sample = torch.randn(2, 4, 8, 8, generator=g)
    context = torch.randn(2, 1, 24, generator=g)
    return unet(sample, torch.tensor([10, 900]), encoder_hidden_states=context).sample


def _expected_lora_count(config: dict, rank: int) -> int:
    """Brute force from the architecture: (in + out) * r per adapted linear layer."""
    unet = build_unet(config)
    total = 0
    for name, module in unet.named_modules():
        if ".transformer_blocks." not in name or not isinstance(module, torch.nn.Linear):
            continue
        if name.endswith(("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj")):
            total += (module.in_features + module.out_features) * rank
    return total


def test_lora_targets_exactly_attention_and_geglu_projections():
    unet = _tiny_unet()
    blocks = [name for name, _ in unet.named_modules() if name.rsplit(".", 2)[-2:-1] == ["transformer_blocks"]]
    assert len(blocks) == 4  # one down, one mid, two up (layers_per_block + 1)
    add_unet_lora(unet, rank=4)
    adapted = {name.removesuffix(".lora_A") for name, _ in unet.named_modules() if name.endswith(".lora_A")}
    expected = {
        f"{block}.{leaf}"
        for block in blocks
        for leaf in [f"{attn}.{proj}" for attn in ("attn1", "attn2") for proj in ("to_q", "to_k", "to_v", "to_out.0")]
        + ["ff.net.0.proj"]
    }
    assert adapted == expected


def test_lora_starts_as_noop_and_only_lora_trains():
    unet = _tiny_unet()
    with torch.no_grad():
        before = _forward(unet)
    add_unet_lora(unet, rank=4)
    with torch.no_grad():
        after = _forward(unet)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    trainable = [name for name, p in unet.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    # q/k/v stay bias-free: no bias on the base layer, none added by the adapter.
    attn = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2
    for proj in (attn.to_q, attn.to_k, attn.to_v):
        assert proj.base_layer.bias is None
        assert not [n for n, _ in proj.named_parameters() if "bias" in n]
    _forward(unet).square().mean().backward()
    grads = {name: p.grad for name, p in unet.named_parameters() if p.requires_grad}
    assert any(g is not None and g.abs().sum() > 0 for name, g in grads.items() if "lora_B" in name)
    assert all(p.grad is None for p in unet.parameters() if not p.requires_grad)


@pytest.mark.parametrize("rank,alpha", [(4, 1.0), (2, 3.0)])
def test_lora_scale_is_alpha_over_rank(rank, alpha):
    unet = _tiny_unet()
    add_unet_lora(unet, rank=rank, alpha=alpha)
    layer = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k
    g = torch.Generator().manual_seed(5)
    a = torch.randn(rank, layer.in_features, generator=g)
    b = torch.randn(layer.out_features, rank, generator=g)
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(a)
        layer.lora_B["default"].weight.copy_(b)
        x = torch.randn(3, layer.in_features, generator=g)
        expected = x @ layer.base_layer.weight.T + (alpha / rank) * (x @ a.T @ b.T)
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_training_modes():
    unet = _tiny_unet()
    with pytest.raises(ValueError, match="add_unet_lora"):
        set_unet_training_mode(unet, "lora")
    with pytest.raises(ValueError, match="unknown UNet training mode"):
        set_unet_training_mode(unet, "partial")
    set_unet_training_mode(unet, "frozen")
    assert not any(p.requires_grad for p in unet.parameters())
    set_unet_training_mode(unet, "full")
    assert all(p.requires_grad for p in unet.parameters())
    add_unet_lora(unet, rank=2)
    assert {id(p) for p in unet.parameters() if p.requires_grad} == {id(p) for p in lora_parameters(unet)}
    set_unet_training_mode(unet, "frozen")
    assert not any(p.requires_grad for p in unet.parameters())
    with pytest.raises(ValueError, match="already"):
        add_unet_lora(unet, rank=2)


def test_tiny_lora_count_matches_brute_force():
    unet = _tiny_unet()
    expected = _expected_lora_count(tiny_unet_config(cross_attention_dim=24), rank=4)
    add_unet_lora(unet, rank=4)
    assert count_lora_parameters(unet) == expected == sum(p.numel() for p in unet.parameters() if p.requires_grad)


@pytest.mark.parametrize("rank", [8, 32])
def test_sd15_lora_count_on_meta_device(rank):
    """Shapes only (meta tensors): the SD v1.5 UNet gets 311,616 x r LoRA parameters."""
    with torch.device("meta"):
        unet = build_unet(sd15_unet_config())
        add_unet_lora(unet, rank=rank)
    assert count_lora_parameters(unet) == SD15_LORA_PARAMETERS_PER_RANK * rank


@pytest.mark.slow
def test_sd15_lora_count_full_size():
    for rank in (8, 32):
        unet = build_unet(sd15_unet_config())
        add_unet_lora(unet, rank=rank)
        count = count_lora_parameters(unet)
        print(f"SD v1.5 UNet LoRA r={rank}: {count:,} parameters (311,616 x {rank} = {311_616 * rank:,})")
        assert count == SD15_LORA_PARAMETERS_PER_RANK * rank
        assert sum(p.numel() for p in unet.parameters() if p.requires_grad) == count
        del unet
