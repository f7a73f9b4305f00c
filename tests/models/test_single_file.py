"""Single-file SD tensors through diffusers' public ``from_single_file``: what dcac adds to it (extras passed
through, missing and unused tensors named)."""

from __future__ import annotations

import pytest
import torch
from test_sd_weights import to_original_layout

from dcac.models.sd_configs import sd15_unet_config, tiny_unet_config, tiny_vae_config
from dcac.models.sd_weights import StableDiffusionWeightsError, build_unet, build_vae, convert_original_state_dict
from dcac.models.single_file import attention_block_name

UNET = "model.diffusion_model."


@pytest.fixture(scope="module")
def original():
    torch.manual_seed(0)
    return to_original_layout(build_unet(tiny_unet_config()), build_vae(tiny_vae_config()))


def test_attention_block_tensors_the_model_lacks_pass_through(original):
    lora = torch.randn(4, 32)
    state = {**original, UNET + "output_blocks.2.1.transformer_blocks.0.attn2.to_k.lora_A": lora}
    unet_state, _ = convert_original_state_dict(state, tiny_unet_config(), tiny_vae_config())
    name = "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"
    assert torch.equal(unet_state[f"{name}.lora_A"], lora) and f"{name}.weight" in unet_state


def test_the_attention_block_rule_skips_upsamplers():
    config = sd15_unet_config()  # 2 layers per block: 3 original blocks per diffusers block
    assert attention_block_name("middle_block.1.proj_in.weight", config) == "mid_block.attentions.0.proj_in.weight"
    assert attention_block_name("input_blocks.8.1.norm.weight", config) == "down_blocks.2.attentions.1.norm.weight"
    assert attention_block_name("output_blocks.2.1.conv.weight", config) is None  # up block 0: no attention
    assert attention_block_name("output_blocks.5.1.norm.weight", config) == "up_blocks.1.attentions.2.norm.weight"
    assert attention_block_name("input_blocks.1.0.in_layers.0.weight", config) is None


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        (UNET + "out.2.weight", r"\(UNet\).*1 missing.*conv_out\.weight"),
        ("first_stage_model.quant_conv.bias", r"\(VAE\).*quant_conv\.bias"),
    ],
)
def test_missing_tensors_are_named(original, drop, named):
    state = {k: v for k, v in original.items() if k != drop}
    with pytest.raises(StableDiffusionWeightsError, match=named):
        convert_original_state_dict(state, tiny_unet_config(), tiny_vae_config(), source="sd.ckpt")


def test_tensors_the_config_does_not_use_are_refused(original):
    state = {**original, UNET + "label_emb.0.weight": torch.zeros(2, 2)}
    with pytest.raises(StableDiffusionWeightsError, match=r"sd.ckpt \(UNet\).*has \d+ tensors"):
        convert_original_state_dict(state, tiny_unet_config(), tiny_vae_config(), source="sd.ckpt")
