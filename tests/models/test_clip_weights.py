"""load_clip_vision_weights: Hugging Face folders, OpenAI state dicts / TorchScript archives, errors.

Tiny CLIP towers are written in the real on-disk formats and loaded back through the real loading code;
outputs are compared with transformers' CLIP and with an OpenAI-style reference forward built on torch's
own ``multi_head_attention_forward`` (the layout OpenAI's ``nn.MultiheadAttention`` weights use).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    CLIPVisionModelWithProjection,
)

from dcac.models.clip_weights import CLIPWeightsError, load_clip_vision_weights
from dcac.models.reid_encoder import CLIPReIDEncoder, ReIDEncoderConfig

WIDTH, LAYERS, HEADS, MLP, PROJ, PATCH, SIDE = 32, 2, 2, 128, 16, 16, 48
GRID = SIDE // PATCH


def _encoder_config(image_size=(SIDE, SIDE), **overrides) -> ReIDEncoderConfig:
    fields = dict(
        image_size=image_size,
        patch_size=PATCH,
        hidden_size=WIDTH,
        num_layers=LAYERS,
        num_heads=HEADS,
        intermediate_size=MLP,
        projection_dim=PROJ,
    )
    fields.update(overrides)
    return ReIDEncoderConfig(**fields)


def _fresh_encoder(**overrides) -> CLIPReIDEncoder:
    torch.manual_seed(123)  # a different init from every source tower
    return CLIPReIDEncoder(_encoder_config(**overrides)).eval()


def _vision_config() -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=WIDTH,
        intermediate_size=MLP,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        image_size=SIDE,
        patch_size=PATCH,
        projection_dim=PROJ,
    )


def _randomise(module: nn.Module, seed: int) -> None:
    """Replace every weight (LayerNorms included) so that no tensor keeps its default value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(0.2 * torch.randn(param.shape, generator=generator) + (param == 1).float())


def _hf_tower(seed: int = 0) -> CLIPVisionModelWithProjection:
    model = CLIPVisionModelWithProjection(_vision_config()).eval()
    _randomise(model, seed)
    return model


def _pixels(height: int = SIDE, width: int = SIDE) -> torch.Tensor:
    return torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(7))


def _hf_to_openai(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Test helper: a prefixed HF vision state dict rewritten in OpenAI's ``visual.*`` layout."""
    v = "vision_model."
    out = {
        "visual.conv1.weight": state[v + "embeddings.patch_embedding.weight"],
        "visual.class_embedding": state[v + "embeddings.class_embedding"],
        "visual.positional_embedding": state[v + "embeddings.position_embedding.weight"],
        "visual.ln_pre.weight": state[v + "pre_layrnorm.weight"],
        "visual.ln_pre.bias": state[v + "pre_layrnorm.bias"],
        "visual.ln_post.weight": state[v + "post_layernorm.weight"],
        "visual.ln_post.bias": state[v + "post_layernorm.bias"],
        "visual.proj": state["visual_projection.weight"].t().contiguous(),
    }
    for i in range(LAYERS):
        hf, oa = f"{v}encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[oa + f"attn.in_proj_{kind}"] = torch.cat([state[hf + f"self_attn.{p}_proj.{kind}"] for p in "qkv"])
            out[oa + f"attn.out_proj.{kind}"] = state[hf + f"self_attn.out_proj.{kind}"]
            out[oa + f"ln_1.{kind}"] = state[hf + f"layer_norm1.{kind}"]
            out[oa + f"ln_2.{kind}"] = state[hf + f"layer_norm2.{kind}"]
            out[oa + f"mlp.c_fc.{kind}"] = state[hf + f"mlp.fc1.{kind}"]
            out[oa + f"mlp.c_proj.{kind}"] = state[hf + f"mlp.fc2.{kind}"]
    # A full OpenAI checkpoint also holds the text tower, whose blocks are not under ``visual.``.
    out["transformer.resblocks.0.attn.in_proj_weight"] = torch.randn(3 * WIDTH, WIDTH)
    out["token_embedding.weight"] = torch.randn(10, WIDTH)
    out["logit_scale"] = torch.tensor(4.6)
    return {k: v.clone() for k, v in out.items()}


def _openai_reference_forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """OpenAI CLIP's VisionTransformer.forward, written against the OpenAI-layout tensors."""
    s = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}
    x = F.conv2d(x, s["conv1.weight"], stride=PATCH).flatten(2).permute(0, 2, 1)
    x = torch.cat([s["class_embedding"].expand(x.shape[0], 1, -1), x], dim=1)
    x = F.layer_norm(x + s["positional_embedding"], (WIDTH,), s["ln_pre.weight"], s["ln_pre.bias"])
    x = x.permute(1, 0, 2)  # sequence-first, as nn.MultiheadAttention expects
    for i in range(LAYERS):
        b = f"transformer.resblocks.{i}."
        h = F.layer_norm(x, (WIDTH,), s[b + "ln_1.weight"], s[b + "ln_1.bias"])
        attn, _ = F.multi_head_attention_forward(
            h,
            h,
            h,
            WIDTH,
            HEADS,
            s[b + "attn.in_proj_weight"],
            s[b + "attn.in_proj_bias"],
            None,
            None,
            False,
            0.0,
            s[b + "attn.out_proj.weight"],
            s[b + "attn.out_proj.bias"],
            training=False,
            need_weights=False,
        )
        x = x + attn
        h = F.layer_norm(x, (WIDTH,), s[b + "ln_2.weight"], s[b + "ln_2.bias"])
        h = F.linear(h, s[b + "mlp.c_fc.weight"], s[b + "mlp.c_fc.bias"])
        h = h * torch.sigmoid(1.702 * h)  # QuickGELU
        x = x + F.linear(h, s[b + "mlp.c_proj.weight"], s[b + "mlp.c_proj.bias"])
    cls = F.layer_norm(x[0], (WIDTH,), s["ln_post.weight"], s["ln_post.bias"])
    return cls @ s["proj"]


class _ParameterHolder(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _save_torchscript(state: dict[str, torch.Tensor], path: Path) -> None:
    """A TorchScript archive whose state_dict has exactly ``state``'s names (as OpenAI's ``.pt``)."""
    root = _ParameterHolder()
    for key, tensor in state.items():
        *parents, leaf = key.split(".")
        module = root
        for part in parents:
            if not hasattr(module, part):
                module.add_module(part, _ParameterHolder())
            module = getattr(module, part)
        module.register_parameter(leaf, nn.Parameter(tensor.clone(), requires_grad=False))
    torch.jit.save(torch.jit.script(root), str(path))


def _openai_state(seed: int = 0) -> tuple[dict[str, torch.Tensor], CLIPVisionModelWithProjection]:
    tower = _hf_tower(seed)
    return _hf_to_openai(tower.state_dict()), tower


# ---- Hugging Face folders ------------------------------------------------------------------------


def test_hf_vision_with_projection_folder_matches_transformers_image_embeds(tmp_path):
    tower = _hf_tower()
    tower.save_pretrained(tmp_path / "hf")
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    encoder = _fresh_encoder()
    load_clip_vision_weights(encoder, tmp_path / "hf")
    x = _pixels()
    with torch.no_grad():
        expected = tower(pixel_values=x).image_embeds
        torch.testing.assert_close(encoder(x), expected, atol=1e-5, rtol=1e-5)


def test_hf_clip_model_folder_loads_only_the_vision_tower(tmp_path):
    config = CLIPConfig(
        text_config=dict(hidden_size=24, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2),
        vision_config=_vision_config().to_dict(),
        projection_dim=PROJ,
    )
    model = CLIPModel(config).eval()
    _randomise(model, 3)
    model.save_pretrained(tmp_path / "clip")
    encoder = _fresh_encoder()
    load_clip_vision_weights(encoder, tmp_path / "clip")
    x = _pixels()
    with torch.no_grad():
        expected = model.visual_projection(model.vision_model(pixel_values=x).pooler_output)
        torch.testing.assert_close(encoder(x), expected, atol=1e-5, rtol=1e-5)


def test_hf_vision_model_bin_folder_needs_explicit_consent_to_keep_a_random_projection(tmp_path):
    model = CLIPVisionModel(_vision_config()).eval()
    _randomise(model, 4)
    folder = tmp_path / "vision"
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")

    encoder = _fresh_encoder()
    with pytest.raises(CLIPWeightsError, match="pytorch_model.bin.*visual_projection.weight.*require_projection"):
        load_clip_vision_weights(encoder, folder)
    own_projection = encoder.visual_projection.weight.clone()
    load_clip_vision_weights(encoder, folder, require_projection=False)
    assert torch.equal(encoder.visual_projection.weight, own_projection)
    x = _pixels()
    with torch.no_grad():
        pooled = model(pixel_values=x).pooler_output
        torch.testing.assert_close(encoder(x), encoder.visual_projection(pooled), atol=1e-5, rtol=1e-5)


def test_hf_config_with_other_head_count_is_rejected_naming_config_json(tmp_path):
    _hf_tower().save_pretrained(tmp_path / "hf")
    encoder = _fresh_encoder(num_heads=4)  # same tensor shapes, different attention
    with pytest.raises(CLIPWeightsError, match=r"config\.json.*num_attention_heads is 2.*expects 4"):
        load_clip_vision_weights(encoder, tmp_path / "hf")


def test_hf_folder_without_weights_is_reported(tmp_path):
    _vision_config().save_pretrained(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_clip_vision_weights(_fresh_encoder(), tmp_path / "empty")


# ---- OpenAI layout ---------------------------------------------------------------------------------


def test_openai_layout_matches_an_independent_openai_style_forward(tmp_path):
    state, _ = _openai_state(seed=1)
    torch.save(state, tmp_path / "ViT-tiny.pt")
    encoder = _fresh_encoder()
    load_clip_vision_weights(encoder, tmp_path / "ViT-tiny.pt")
    x = _pixels()
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), _openai_reference_forward(state, x), atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # OpenAI ships TorchScript
@pytest.mark.parametrize("container", ["torch_save", "safetensors_visual_only", "torchscript"])
def test_openai_containers_give_transformers_outputs(tmp_path, container):
    state, tower = _openai_state(seed=2)
    if container == "torch_save":
        path = tmp_path / "ViT-tiny.pth"
        torch.save(state, path)
    elif container == "safetensors_visual_only":
        # e.g. ``model.visual.state_dict()`` saved on its own: no ``visual.`` prefix.
        path = tmp_path / "visual.safetensors"
        save_file({k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}, path)
    else:
        path = tmp_path / "ViT-B-16-like.pt"
        _save_torchscript(state, path)
    encoder = _fresh_encoder()
    load_clip_vision_weights(encoder, path)
    x = _pixels()
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), tower(pixel_values=x).image_embeds, atol=1e-5, rtol=1e-5)


def test_half_precision_openai_weights_load_into_a_float32_encoder(tmp_path):
    state, _ = _openai_state(seed=5)
    half = {k: v.half() for k, v in state.items()}
    torch.save(half, tmp_path / "fp16.pt")
    encoder = _fresh_encoder()
    load_clip_vision_weights(encoder, tmp_path / "fp16.pt")
    assert encoder.embeddings.class_embedding.dtype == torch.float32
    torch.testing.assert_close(encoder.embeddings.class_embedding, half["visual.class_embedding"].float())
    torch.testing.assert_close(encoder.visual_projection.weight, half["visual.proj"].float().t())


def test_square_table_is_resized_once_to_the_reid_grid_and_patch_embed_stays_frozen(tmp_path, caplog):
    state, _ = _openai_state(seed=6)
    torch.save(state, tmp_path / "clip.pt")
    encoder = _fresh_encoder(image_size=(64, 32))  # 4×2 grid from the 3×3 source
    with caplog.at_level(logging.INFO, logger="dcac.models.clip_weights"):
        load_clip_vision_weights(encoder, tmp_path / "clip.pt")
    table = encoder.embeddings.position_embedding.weight
    source = state["visual.positional_embedding"]
    assert table.shape == (1 + 4 * 2, WIDTH)
    torch.testing.assert_close(table[0], source[0], rtol=0, atol=0)
    grid = source[1:].reshape(GRID, GRID, WIDTH).permute(2, 0, 1).unsqueeze(0)
    by_hand = F.interpolate(grid, size=(4, 2), mode="bilinear", align_corners=False)
    torch.testing.assert_close(table[1:].detach(), by_hand[0].permute(1, 2, 0).reshape(8, WIDTH))
    assert not encoder.embeddings.patch_embedding.weight.requires_grad
    assert encoder.embeddings.position_embedding.weight.requires_grad
    assert "resized 'visual.positional_embedding' from 10 to 9" in caplog.text
    assert "encoder.layers.1.self_attn.v_proj.bias" in caplog.text  # the loaded keys are reported
    assert encoder(torch.randn(1, 3, 64, 32)).shape == (1, PROJ)


def test_a_saved_encoder_reloads_without_resizing(tmp_path):
    source = _fresh_encoder(image_size=(64, 32))
    _randomise(source, 8)
    save_file(source.state_dict(), tmp_path / "encoder.safetensors")
    target = CLIPReIDEncoder(_encoder_config(image_size=(64, 32))).eval()
    load_clip_vision_weights(target, tmp_path / "encoder.safetensors")
    x = _pixels(64, 32)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


# ---- errors ----------------------------------------------------------------------------------------


def test_missing_key_is_named_with_the_file(tmp_path):
    state, _ = _openai_state()
    del state["visual.ln_post.weight"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(CLIPWeightsError, match=r"broken\.pt.*post_layernorm\.weight"):
        load_clip_vision_weights(_fresh_encoder(), tmp_path / "broken.pt")


def test_shape_mismatch_is_named_with_the_file_and_both_keys(tmp_path):
    state, _ = _openai_state()
    torch.save(state, tmp_path / "clip.pt")
    with pytest.raises(CLIPWeightsError, match=r"clip\.pt.*'visual\.proj'.*visual_projection\.weight"):
        load_clip_vision_weights(_fresh_encoder(projection_dim=8), tmp_path / "clip.pt")


def test_deeper_checkpoint_than_the_encoder_is_rejected(tmp_path):
    state, _ = _openai_state()
    torch.save(state, tmp_path / "deep.pt")
    with pytest.raises(CLIPWeightsError, match=r"deep\.pt.*resblocks\.1.*no counterpart"):
        load_clip_vision_weights(_fresh_encoder(num_layers=1), tmp_path / "deep.pt")


def test_non_clip_files_and_missing_paths_are_rejected(tmp_path):
    torch.save({"backbone.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CLIPWeightsError, match=r"other\.pt.*no CLIP vision tower"):
        load_clip_vision_weights(_fresh_encoder(), tmp_path / "other.pt")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(CLIPWeightsError, match=r"list\.pt.*state dict"):
        load_clip_vision_weights(_fresh_encoder(), tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_clip_vision_weights(_fresh_encoder(), tmp_path / "nowhere.pt")
