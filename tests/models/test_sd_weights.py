"""Loading SD UNet+VAE weights from a diffusers folder and from original-layout single files.

The original (LDM) layout is produced here by an independent diffusers->original key mapping,
written from the layout of the original `ldm` code, so the loader's conversion is checked by a
round trip: identical state dicts and identical outputs.
"""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import save_file

from dcac.models.sd_configs import sd15_unet_config, sd15_vae_config, tiny_unet_config, tiny_vae_config
from dcac.models.sd_weights import (
    StableDiffusionWeightsError,
    build_unet,
    build_vae,
    convert_original_state_dict,
    load_stable_diffusion,
)

_UNET_RESNET = [
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
]
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def _unet_key_to_original(key: str, config: dict) -> str:
    stride = config["layers_per_block"] + 1
    up_has_attention = ["CrossAttn" in kind for kind in config["up_block_types"]]
    head, _, leaf = key.rpartition(".")
    if head in _UNET_TOP:
        return f"{_UNET_TOP[head]}.{leaf}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(\w+)", key):
        i, j, part, leaf = int(m[1]), int(m[2]), m[3], m[4]
        return f"input_blocks.{stride * i + j + 1}.0.{dict(_UNET_RESNET)[part]}.{leaf}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        return f"input_blocks.{stride * int(m[1]) + int(m[2]) + 1}.1.{m[3]}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)", key):
        return f"input_blocks.{stride * (int(m[1]) + 1)}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(\w+)\.(\w+)", key):
        return f"middle_block.{2 * int(m[1])}.{dict(_UNET_RESNET)[m[2]]}.{m[3]}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(\w+)", key):
        i, j, part, leaf = int(m[1]), int(m[2]), m[3], m[4]
        return f"output_blocks.{stride * i + j}.0.{dict(_UNET_RESNET)[part]}.{leaf}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        return f"output_blocks.{stride * int(m[1]) + int(m[2])}.1.{m[3]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)", key):
        i = int(m[1])
        return f"output_blocks.{stride * i + stride - 1}.{2 if up_has_attention[i] else 1}.conv.{m[2]}"
    raise KeyError(f"no original-layout name for UNet key {key}")


def _vae_key_to_original(key: str, config: dict) -> str:
    n_up = len(config["up_block_types"])
    key = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    key = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2.", key)
    key = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", key)
    key = re.sub(
        r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.",
        lambda m: f"decoder.up.{n_up - 1 - int(m[1])}.block.{m[2]}.",
        key,
    )
    key = re.sub(
        r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"decoder.up.{n_up - 1 - int(m[1])}.upsample.", key
    )
    key = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", key)
    attention = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    if m := re.fullmatch(r"(\w+)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key):
        return f"{m[1]}.mid.attn_1.{attention[m[2]]}.{m[3]}"
    return key


def to_original_layout(unet, vae) -> dict[str, torch.Tensor]:
    """Diffusers UNet+VAE -> one state dict in the original `v1-5-pruned.ckpt` key layout."""
    state = {}
    for key, value in unet.state_dict().items():
        state["model.diffusion_model." + _unet_key_to_original(key, unet.config)] = value.clone()
    for key, value in vae.state_dict().items():
        original = _vae_key_to_original(key, vae.config)
        # The original VAE attention uses 1x1 convolutions where diffusers uses linear layers.
        if ".attn_1." in original and original.endswith("weight") and value.ndim == 2:
            value = value[:, :, None, None]
        state["first_stage_model." + original] = value.clone()
    return state


@pytest.fixture(scope="module")
def tiny_models():
    torch.manual_seed(0)
    unet, vae = build_unet(tiny_unet_config()), build_vae(tiny_vae_config())
    # Non-trivial values everywhere (zero-initialised convs would hide swapped keys).
    with torch.no_grad():
        for p in list(unet.parameters()) + list(vae.parameters()):
            p.normal_(0.0, 0.05)
    return unet.eval(), vae.eval()


def _outputs(unet, vae):
    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    latent = torch.randn(2, 4, 8, 8, generator=g)
    context = torch.randn(2, 1, unet.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        posterior = vae.encode(image).latent_dist
        decoded = vae.decode(latent).sample
        eps = unet(latent, torch.tensor([3, 700]), encoder_hidden_states=context).sample
    return posterior.mean, posterior.std, decoded, eps


def _assert_same(models_a, models_b):
    for model_a, model_b in zip(models_a, models_b):
        state_a, state_b = model_a.state_dict(), model_b.state_dict()
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            assert torch.equal(state_a[key], state_b[key]), key
    # Identical weights; converted tensors may be laid out differently in memory, which changes
    # the float summation order of the kernels, hence a tolerance at float32 rounding level.
    for out_a, out_b in zip(_outputs(*models_a), _outputs(*models_b)):
        torch.testing.assert_close(out_a, out_b, rtol=1e-5, atol=1e-6)


def test_diffusers_folder_round_trip(tmp_path, tiny_models):
    unet, vae = tiny_models
    unet.save_pretrained(tmp_path / "unet")
    vae.save_pretrained(tmp_path / "vae")
    _assert_same(tiny_models, load_stable_diffusion(tmp_path))


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_original_single_file_round_trip(tmp_path, tiny_models, suffix):
    original = to_original_layout(*tiny_models)
    assert "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight" in original
    assert original["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4
    path = tmp_path / f"v1-5-pruned{suffix}"
    if suffix == ".ckpt":
        # Lightning wrapper plus an unrelated text-encoder tensor, as in the real release file.
        original["cond_stage_model.transformer.dummy"] = torch.zeros(3)
        torch.save({"state_dict": original, "global_step": 840000}, path)
    else:
        save_file(original, str(path))
    loaded = load_stable_diffusion(path, unet_config=tiny_unet_config(), vae_config=tiny_vae_config())
    _assert_same(tiny_models, loaded)


def test_single_file_dtype(tmp_path, tiny_models):
    path = tmp_path / "sd.safetensors"
    save_file(to_original_layout(*tiny_models), str(path))
    unet, vae = load_stable_diffusion(
        path, unet_config=tiny_unet_config(), vae_config=tiny_vae_config(), dtype=torch.bfloat16
    )
    assert {p.dtype for p in unet.parameters()} == {torch.bfloat16} == {p.dtype for p in vae.parameters()}


def test_full_size_sd15_conversion_covers_every_key():
    """The SD v1.5 config converts the full original layout (686 UNet + 248 VAE tensors) key for key."""
    with torch.device("meta"):
        unet, vae = build_unet(sd15_unet_config()), build_vae(sd15_vae_config())
    original = to_original_layout(unet, vae)
    assert "model.diffusion_model.output_blocks.2.1.conv.weight" in original
    assert "model.diffusion_model.output_blocks.5.2.conv.weight" in original
    assert "first_stage_model.decoder.up.3.upsample.conv.weight" in original
    unet_state, vae_state = convert_original_state_dict(original, sd15_unet_config(), sd15_vae_config())
    assert len(unet_state) == 686 and len(vae_state) == 248
    for converted, model in ((unet_state, unet), (vae_state, vae)):
        expected = model.state_dict()
        assert converted.keys() == expected.keys()
        assert all(converted[k].shape == expected[k].shape for k in expected)


def test_errors_name_the_file(tmp_path, tiny_models):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_stable_diffusion(tmp_path / "nowhere.ckpt")
    (tmp_path / "folder" / "unet").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="vae"):
        load_stable_diffusion(tmp_path / "folder")
    no_unet = tmp_path / "vae_only.safetensors"
    save_file({"first_stage_model.x": torch.zeros(1)}, str(no_unet))
    with pytest.raises(StableDiffusionWeightsError, match=r"vae_only.*model\.diffusion_model"):
        load_stable_diffusion(no_unet, unet_config=tiny_unet_config(), vae_config=tiny_vae_config())
    tiny_file = tmp_path / "tiny.safetensors"
    save_file(to_original_layout(*tiny_models), str(tiny_file))
    wrong_width = tiny_unet_config(cross_attention_dim=48)
    with pytest.raises(StableDiffusionWeightsError, match=r"tiny\.safetensors \(UNet\).*shape"):
        load_stable_diffusion(tiny_file, unet_config=wrong_width, vae_config=tiny_vae_config())
    with pytest.raises(StableDiffusionWeightsError, match="suffix"):
        (tmp_path / "weights.txt").write_text("x")
        load_stable_diffusion(tmp_path / "weights.txt")
