"""The one translation from a run's config to the models: building them (random init, or pre-trained weights when
the config names them) and loading a trained run's Re-ID model. The modules of ``dcac.models`` take their own
settings (``ReIDEncoderConfig``, ``DiffusionTeacherConfig``, ``LossWeights``), not the run's config."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from dcac.config import DCACConfig, load_run_config
from dcac.config.compat import is_official
from dcac.models.reid_encoder import ReIDEncoderConfig
from dcac.models.reid_model import ReIDModel
from dcac.storage.checkpoint import CheckpointError, load_tensors
from dcac.storage.run_folder import RUN_CONFIG, read_run_info, resolve_run
from dcac.storage.tensor_checks import require_finite


def encoder_config(config: DCACConfig) -> ReIDEncoderConfig:
    size = (config.data.height, config.data.width)
    base = (
        ReIDEncoderConfig.vit_b16() if config.encoder.preset == "vit_b16" else ReIDEncoderConfig.tiny(image_size=size)
    )
    return replace(base, image_size=size, freeze_patch_embed=config.encoder.freeze_patch_embed)


def build_reid_model(config: DCACConfig, num_ids: int, *, load_weights: bool = False) -> ReIDModel:
    """The Re-ID model; with ``load_weights`` the CLIP weights named by ``encoder.weights`` are loaded."""
    model = ReIDModel(encoder_config(config), num_ids)
    if load_weights and config.encoder.weights:
        from dcac.hub.download import CLIP_FILES, resolve_weights
        from dcac.models.official_checkpoint import load_encoder_start

        load_encoder_start(model, resolve_weights(config.encoder.weights, CLIP_FILES, what="encoder.weights"))
    model.encoder.enable_gradient_checkpointing(config.encoder.gradient_checkpointing)
    return model


def build_dcac(config: DCACConfig, num_ids: int):
    """The whole training module: Re-ID model, ID memory and (unless the baseline) the teacher and conditioner.

    With ``train.compat=official`` the BNNeck runs twice per step, the memory's logits are float16 and the
    teacher's q/k/v projections carry frozen random biases drawn from ``train.seed`` (``dcac.config.compat``).
    """
    from dcac.losses import PrototypeMemory
    from dcac.models.conditioning import IDConditioner
    from dcac.models.dcac import DCAC, LossWeights

    official = is_official(config)
    reid = build_reid_model(config, num_ids, load_weights=True)
    feat_dim = reid.bottleneck.num_features
    memory = PrototypeMemory(
        num_ids,
        feat_dim,
        temperature=config.loss.pcl_temperature,
        momentum=config.loss.pcl_momentum,
        update_mode=config.loss.pcl_update,
        logits_dtype=torch.float16 if official else torch.float32,
    )
    teacher = conditioner = None
    if config.conditioning.has_teacher:
        teacher = build_teacher(config)
        conditioner = IDConditioner(
            num_ids,
            context_dim=teacher.cross_attention_dim,
            feat_dim=feat_dim,
            variant=config.conditioning.variant,
            prob_source=config.conditioning.prob_source,
            temperature=config.conditioning.temperature,
        )
    weights = LossWeights(
        id_weight=config.loss.id_weight,
        pcl_weight=config.loss.pcl_weight,
        diffusion_weight=config.loss.diffusion_weight,
        label_smoothing=config.loss.label_smoothing,
    )
    return DCAC(reid, memory, weights, teacher=teacher, conditioner=conditioner, bnneck_twice=official)


def build_teacher(config: DCACConfig):
    """The diffusion teacher of ``config.diffusion`` at ``data.diffusion_size`` (with the compat biases)."""
    from dcac.hub.download import DIFFUSERS_FILES, resolve_weights
    from dcac.models.diffusion_teacher import DiffusionTeacher, DiffusionTeacherConfig

    official = is_official(config)
    diffusion = config.diffusion
    return DiffusionTeacher(
        DiffusionTeacherConfig(
            preset=diffusion.preset,
            # A Hub id in diffusion.weights is resolved to its local snapshot in the Hub cache.
            weights=resolve_weights(diffusion.weights, DIFFUSERS_FILES, what="diffusion.weights"),
            mode=diffusion.mode,
            lora_rank=diffusion.lora_rank,
            lora_alpha=diffusion.lora_alpha,
            single_token_attention=diffusion.single_token_attention,
            gradient_checkpointing=diffusion.gradient_checkpointing,
            image_size=config.data.diffusion_size,
            qkv_bias_seed=config.train.seed if official and diffusion.mode == "lora" else None,
            encode_under_autocast=official,
        )
    )


def load_reid_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the trained Re-ID model of a run, in eval mode.

    Returns ``(model, config, run_info)``.
    """
    run_dir, weights = resolve_run(path)
    config = load_run_config(run_dir / RUN_CONFIG)
    run_info = read_run_info(run_dir)
    model = build_reid_model(config, num_ids=int(run_info["num_ids"]))
    state = load_tensors(weights)
    require_finite(state, weights)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{weights} does not match the model of {run_dir / RUN_CONFIG}: "
            f"missing keys {sorted(missing)[:5]}, unexpected keys {sorted(unexpected)[:5]}"
        )
    return model.to(device).eval(), config, run_info
