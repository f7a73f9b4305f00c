"""CLIPReIDEncoder: shapes, frozen patch embedding, attention backends, positional-table resize."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dcac.models.reid_encoder import CLIPReIDEncoder, ReIDEncoderConfig


def _encoder(**overrides) -> CLIPReIDEncoder:
    torch.manual_seed(0)
    return CLIPReIDEncoder(ReIDEncoderConfig.tiny(**overrides)).eval()


def test_output_is_one_projected_vector_per_image_on_a_non_square_grid():
    encoder = _encoder(image_size=(64, 32))
    assert encoder.config.grid_size == (4, 2)
    assert encoder.embeddings.position_embedding.weight.shape == (4 * 2 + 1, 64)
    feat = encoder(torch.randn(3, 3, 64, 32))
    assert feat.shape == (3, 32)
    assert torch.isfinite(feat).all()


def test_output_is_class_token_after_post_layernorm_and_bias_free_projection():
    encoder = _encoder()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        tokens = encoder.embeddings(x)
        hidden = encoder.pre_layrnorm(tokens)
        for layer in encoder.encoder.layers:
            hidden = layer(hidden, None)
        expected = encoder.post_layernorm(hidden[:, 0]) @ encoder.visual_projection.weight.T
        # Embedding layer by hand: conv patches in row-major order, class token first.
        patches = F.conv2d(x, encoder.embeddings.patch_embedding.weight, stride=16)
        patches = patches.flatten(2).transpose(1, 2)
        cls = encoder.embeddings.class_embedding.expand(2, 1, -1)
        hand_tokens = torch.cat([cls, patches], 1) + encoder.embeddings.position_embedding.weight
        torch.testing.assert_close(tokens, hand_tokens)
        torch.testing.assert_close(encoder(x), expected)
    assert encoder.visual_projection.bias is None


def test_patch_embedding_is_frozen_and_everything_else_trains():
    encoder = _encoder()
    assert not encoder.embeddings.patch_embedding.weight.requires_grad
    encoder(torch.randn(2, 3, 64, 32)).square().sum().backward()
    for name, param in encoder.named_parameters():
        if name == "embeddings.patch_embedding.weight":
            assert param.grad is None
        else:
            assert param.requires_grad, name
            assert param.grad is not None and param.grad.abs().sum() > 0, name

    unfrozen = _encoder(freeze_patch_embed=False)
    assert all(p.requires_grad for p in unfrozen.parameters())


def test_sdpa_and_eager_attention_give_the_same_features():
    sdpa = _encoder(attn_implementation="sdpa")
    eager = _encoder(attn_implementation="eager")
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.encoder.config._attn_implementation == "sdpa"
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(sdpa(x), eager(x), atol=1e-5, rtol=1e-5)


def test_wrong_input_size_is_rejected_with_the_expected_shape():
    encoder = _encoder()
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 32\)"):
        encoder(torch.randn(1, 3, 32, 64))


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="divisible by patch_size"):
        ReIDEncoderConfig(image_size=(250, 128))
    with pytest.raises(ValueError, match="num_heads"):
        ReIDEncoderConfig(hidden_size=100, num_heads=12)
    config = ReIDEncoderConfig.tiny(image_size=[96, 48])
    assert config.image_size == (96, 48)
    assert ReIDEncoderConfig(**config.to_dict()) == config
    vit = ReIDEncoderConfig.vit_b16()
    assert vit == ReIDEncoderConfig()
    assert vit.grid_size == (16, 8) and vit.num_positions == 129


def test_position_resize_keeps_class_token_and_matches_bilinear_interpolation():
    torch.manual_seed(1)
    dim = 6
    table = torch.randn(1 + 14 * 14, dim)
    resized = CLIPReIDEncoder.resize_position_embedding(table, (16, 8))
    assert resized.shape == (1 + 16 * 8, dim)
    torch.testing.assert_close(resized[0], table[0], rtol=0, atol=0)

    grid = table[1:].reshape(14, 14, dim).permute(2, 0, 1).unsqueeze(0)
    by_hand = F.interpolate(grid, size=(16, 8), mode="bilinear", align_corners=False)
    by_hand = by_hand[0].permute(1, 2, 0).reshape(16 * 8, dim)
    torch.testing.assert_close(resized[1:], by_hand)


def test_position_resize_of_half_precision_table_and_explicit_old_grid():
    table = torch.randn(1 + 4 * 2, 3)
    same = CLIPReIDEncoder.resize_position_embedding(table, (4, 2), old_grid=(4, 2))
    torch.testing.assert_close(same, table)
    half = CLIPReIDEncoder.resize_position_embedding(table.half(), (8, 4), old_grid=(4, 2))
    assert half.dtype == torch.float16
    with pytest.raises(ValueError, match="not a square grid"):
        CLIPReIDEncoder.resize_position_embedding(table, (8, 4))
    with pytest.raises(ValueError, match="does not match"):
        CLIPReIDEncoder.resize_position_embedding(table, (8, 4), old_grid=(3, 3))


def _vit_b16_parameter_count(height: int, width: int) -> int:
    """Parameters of CLIP ViT-B/16's image tower at H×W, from the architecture."""
    d, mlp, layers, proj, p = 768, 3072, 12, 512, 16
    patch_conv = 3 * p * p * d  # bias-free
    tokens = (height // p) * (width // p) + 1
    embeddings = patch_conv + d + tokens * d  # conv + class token + positional table
    layer_norm = 2 * d
    block = (
        4 * (d * d + d)  # q, k, v, out projections with biases
        + (d * mlp + mlp)
        + (mlp * d + d)  # MLP
        + 2 * layer_norm
    )
    return embeddings + layer_norm + layers * block + layer_norm + d * proj


@pytest.mark.slow
def test_full_size_vit_b16_at_256x128_has_the_architectures_parameter_count():
    encoder = CLIPReIDEncoder(ReIDEncoderConfig.vit_b16())
    total = sum(p.numel() for p in encoder.parameters())
    trainable = sum(p.numel() for p in encoder.parameters() if p.requires_grad)
    expected = _vit_b16_parameter_count(256, 128)
    print(f"CLIP ViT-B/16 @256x128: {total:,} parameters, {trainable:,} trainable")
    assert expected == 86_140_416
    assert total == expected
    assert trainable == expected - 3 * 16 * 16 * 768
    # Sanity of the formula against the published square tower (224×224): 86.19 M.
    assert _vit_b16_parameter_count(224, 224) == 86_192_640
    with torch.no_grad():
        assert encoder(torch.randn(1, 3, 256, 128)).shape == (1, 512)


def _saved_tensor_bytes_and_grads(encoder: CLIPReIDEncoder, images: torch.Tensor):
    """Bytes autograd keeps for the backward pass of one forward, the output, and the input gradients."""
    stored: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        stored[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    images = images.clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = encoder(images)
    params = {p.untyped_storage().data_ptr() for p in encoder.parameters()}
    saved = sum(n for ptr, n in stored.items() if ptr not in params)
    out.square().sum().backward()
    return (
        saved,
        out.detach(),
        images.grad,
        {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None},
    )


def test_gradient_checkpointing_keeps_less_and_computes_the_same_gradients():
    torch.manual_seed(0)
    images = torch.randn(4, 3, 64, 32)
    plain, checkpointed = _encoder().train(), _encoder().train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.enable_gradient_checkpointing()
    saved_plain, out_plain, dx_plain, grads_plain = _saved_tensor_bytes_and_grads(plain, images)
    saved_ckpt, out_ckpt, dx_ckpt, grads_ckpt = _saved_tensor_bytes_and_grads(checkpointed, images)
    # Only each layer's input is kept across the layers (the rest is recomputed in the backward pass).
    assert saved_ckpt < 0.5 * saved_plain
    torch.testing.assert_close(out_ckpt, out_plain, rtol=0, atol=0)
    torch.testing.assert_close(dx_ckpt, dx_plain, rtol=1e-5, atol=1e-7)
    assert grads_ckpt.keys() == grads_plain.keys() and len(grads_plain) > 10
    for name in grads_plain:
        torch.testing.assert_close(grads_ckpt[name], grads_plain[name], rtol=1e-5, atol=1e-7, msg=name)
    # At evaluation (no autograd graph) the switch changes nothing.
    with torch.no_grad():
        torch.testing.assert_close(checkpointed.eval()(images), plain.eval()(images), rtol=0, atol=0)
