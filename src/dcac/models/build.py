"""Building the models of a run from its config (random init, or pre-trained weights when the config names them)."""

from __future__ import annotations

from dataclasses import replace

from dcac.config import DCACConfig
from dcac.models.reid_encoder import ReIDEncoderConfig
from dcac.models.reid_model import ReIDModel


def encoder_config(config: DCACConfig) -> ReIDEncoderConfig:
    size = (config.data.height, config.data.width)
    base = ReIDEncoderConfig.vit_b16() if config.encoder.preset == "vit_b16" else ReIDEncoderConfig.tiny(image_size=size)
    return replace(base, image_size=size, freeze_patch_embed=config.encoder.freeze_patch_embed)


def build_reid_model(config: DCACConfig, num_ids: int) -> ReIDModel:
    return ReIDModel(encoder_config(config), num_ids)
