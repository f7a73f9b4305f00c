"""Architecture configs of the Stable Diffusion v1.5 UNet and VAE, written out locally.

No model hub is reachable at run time, so the diffusers configs of SD v1.5
(`runwayml/stable-diffusion-v1-5`, folders `unet/` and `vae/`) are spelled out here. They are
what the single-file loader needs to convert an original `v1-5-pruned.ckpt`, and what
`build_unet` / `build_vae` use to make randomly initialised full-size models.

The "tiny" preset keeps the same classes and block layout (cross-attention down block, plain
down block, cross-attention mid block; 8x VAE downsampling) at small widths, so tests and demos
exercise the real code paths in seconds on a CPU.

Each function returns a fresh dict, so callers may edit it without touching the preset.
"""

from __future__ import annotations

from typing import Any

from dcac.config.choices import DIFFUSION_PRESETS

#: Cross-attention width of SD v1.5 (the CLIP ViT-L/14 text width); the ID prompts use it.
SD15_CROSS_ATTENTION_DIM = 768


def sd15_unet_config() -> dict[str, Any]:
    """The diffusers `UNet2DConditionModel` config of SD v1.5 (`unet/config.json`)."""
    return {
        "act_fn": "silu",
        "attention_head_dim": 8,
        "block_out_channels": [320, 640, 1280, 1280],
        "center_input_sample": False,
        "cross_attention_dim": SD15_CROSS_ATTENTION_DIM,
        "down_block_types": [
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ],
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 4,
        "layers_per_block": 2,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-5,
        "norm_num_groups": 32,
        "out_channels": 4,
        "sample_size": 64,
        "up_block_types": [
            "UpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
        ],
    }


def sd15_vae_config() -> dict[str, Any]:
    """The diffusers `AutoencoderKL` config of SD v1.5 (`vae/config.json`): 8x downsampling, 4 latent channels."""
    return {
        "act_fn": "silu",
        "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "in_channels": 3,
        "latent_channels": 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "out_channels": 3,
        "sample_size": 512,
        "scaling_factor": 0.18215,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
    }


def tiny_unet_config(cross_attention_dim: int = 32) -> dict[str, Any]:
    """A small UNet with SD v1.5's block structure (one cross-attention level, cross-attention mid block).

    Latent inputs need an even height and width (one downsampling step). `cross_attention_dim`
    sets the conditioning width; the teacher reads it back from `unet.config.cross_attention_dim`.
    """
    return {
        "act_fn": "silu",
        "attention_head_dim": 4,
        "block_out_channels": [32, 64],
        "cross_attention_dim": cross_attention_dim,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "in_channels": 4,
        "layers_per_block": 1,
        "norm_num_groups": 32,
        "out_channels": 4,
        "sample_size": 16,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    }


def tiny_vae_config() -> dict[str, Any]:
    """A small KL autoencoder with SD v1.5's 8x downsampling and 4 latent channels (128x128 -> 4x16x16)."""
    return {
        "act_fn": "silu",
        "block_out_channels": [16, 16, 32, 32],
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "in_channels": 3,
        "latent_channels": 4,
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "out_channels": 3,
        "sample_size": 128,
        "scaling_factor": 0.18215,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
    }


def preset_configs(preset: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(unet_config, vae_config) of a named preset: "sd15" (full size) or "tiny"."""
    if preset == "sd15":
        return sd15_unet_config(), sd15_vae_config()
    if preset == "tiny":
        return tiny_unet_config(), tiny_vae_config()
    raise ValueError(f"unknown diffusion preset {preset!r}; expected one of {DIFFUSION_PRESETS}")
