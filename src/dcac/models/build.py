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


def build_reid_model(config: DCACConfig, num_ids: int, *, load_weights: bool = False) -> ReIDModel:
    """The Re-ID model; with ``load_weights`` the CLIP weights named by ``encoder.weights`` are loaded."""
    model = ReIDModel(encoder_config(config), num_ids)
    if load_weights and config.encoder.weights:
        from dcac.models.official_checkpoint import load_encoder_start

        load_encoder_start(model, config.encoder.weights)
    model.encoder.enable_gradient_checkpointing(config.encoder.gradient_checkpointing)
    return model


def build_dcac(config: DCACConfig, num_ids: int):
    """The whole training module of DESIGN §1: Re-ID model, ID memory and (unless the baseline) the teacher."""
    from dcac.losses import PrototypeMemory
    from dcac.models.conditioning import IDConditioner
    from dcac.models.dcac import DCAC
    from dcac.models.diffusion_teacher import DiffusionTeacher, DiffusionTeacherConfig

    reid = build_reid_model(config, num_ids, load_weights=True)
    feat_dim = reid.bottleneck.num_features
    memory = PrototypeMemory(num_ids, feat_dim)
    teacher = conditioner = None
    if config.conditioning.variant != "none":
        d = config.diffusion
        teacher = DiffusionTeacher(
            DiffusionTeacherConfig(
                preset=d.preset,
                weights=d.weights,
                mode=d.mode,
                lora_rank=d.lora_rank,
                lora_alpha=d.lora_alpha,
                image_size=config.data.diffusion_size,
                single_token_attention=d.single_token_attention,
                gradient_checkpointing=d.gradient_checkpointing,
            )
        )
        conditioner = IDConditioner(
            num_ids,
            context_dim=teacher.cross_attention_dim,
            feat_dim=feat_dim,
            variant=config.conditioning.variant,
            prob_source=config.conditioning.prob_source,
            temperature=config.conditioning.temperature,
        )
    return DCAC(reid, memory, config.loss, teacher=teacher, conditioner=conditioner)
