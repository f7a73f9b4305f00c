"""The diffusion-teacher part of a released DCAC checkpoint, under the names of dcac's training module.

The official teacher (``denoiser.*``) is the LDM UNet of Stable Diffusion v1.5 wrapped with ``loralib``:

* ``denoiser.model.<LDM UNet key>``: the frozen base weights (those of ``v1-5-pruned.ckpt``);
* ``denoiser.model.<adapted layer>.lora_A`` (r × in) / ``.lora_B`` (out × r), scale ``alpha / r``, on
  ``attn1/attn2.to_q/to_k/to_v/to_out.0`` and ``ff.net.0.proj`` of every transformer block, the same layers
  and the same update ``W x + (alpha / r) B A x`` as dcac's peft adapters (``lora_A.default.weight``,
  ``lora_B.default.weight``);
* ``denoiser.model.<...>.attn1/attn2.to_q/to_k/to_v.bias``: frozen biases that loralib's ``Linear`` adds by
  default on those bias-free projections, left at their random initialisation (the paper's numbers were
  produced with them);
* ``denoiser.model.prompt_emb.prompt_emb``: the N_ids × 768 ID prompts P of ``c = softmax(z / tau) P``;
* ``denoiser.autoencoder.*``: the frozen VAE; ``denoiser.<schedule buffer>``: the DDPM schedule.

The official trainer saves in train mode, where loralib keeps B A out of the base weight (it merges it only
in eval mode), so the base weights are SD v1.5's and the LoRA is read as stored; a file saved in eval mode
would hold B A twice, which nothing in the file shows.

LDM paths become diffusers paths with diffusers' own LDM → diffusers converter, which carries the LoRA and
bias keys of a transformer block along with the block.  The frozen base UNet and VAE are checked (every key
present, with the configured shapes) but not written: dcac's teacher takes them from ``diffusion.weights``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from dcac.config import DCACConfig
from dcac.models.official_checkpoint import OfficialCheckpointError, show_keys
from dcac.models.sd_configs import preset_configs
from dcac.models.sd_weights import ORIGINAL_UNET_PREFIX, StableDiffusionWeightsError, convert_original_state_dict

OFFICIAL_PROMPTS = "denoiser.model.prompt_emb.prompt_emb"
OFFICIAL_UNET = "denoiser.model."
OFFICIAL_VAE = "denoiser.autoencoder."
_SCHEDULE_BUFFERS = frozenset(
    "denoiser." + name
    for name in (
        "betas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
    )
)
_LDM_UNET_PARTS = ("time_embed.", "input_blocks.", "middle_block.", "output_blocks.", "out.")
_LORA_KEY = re.compile(
    r"(.*\.transformer_blocks\.\d+\.(?:attn[12]\.(?:to_q|to_k|to_v|to_out\.0)|ff\.net\.0\.proj))\.(lora_[AB])"
)
_QKV_BIAS_KEY = re.compile(r".*\.transformer_blocks\.\d+\.attn[12]\.to_[qkv]\.bias")

#: dcac's name of the ID prompts in the training module.
DCAC_PROMPTS = "conditioner.prompts"
_DCAC_UNET = "teacher.unet."


def official_teacher_state(
    state: dict[str, torch.Tensor], config: DCACConfig, num_ids: int, path: str | Path
) -> dict[str, torch.Tensor]:
    """LoRA (peft names), ID prompts and the frozen q/k/v biases (diffusers names) of a released teacher.

    ``state`` holds the checkpoint's ``denoiser.*`` tensors. The keys of the result are those of dcac's
    training module (``teacher.unet.…lora_A.default.weight``, ``conditioner.prompts``), the biases
    ``teacher.unet.<diffusers module>.bias``; :func:`load_teacher_init` puts them into a model.
    """
    unet_config, vae_config = preset_configs(config.diffusion.preset)
    ldm, unexpected = _split_teacher(state)
    try:
        unet_state, vae_state = convert_original_state_dict(ldm, unet_config, vae_config, source=str(path))
    except (KeyError, StableDiffusionWeightsError) as err:
        neither = f"; keys that fit neither: {show_keys(unexpected)}" if unexpected else ""
        raise OfficialCheckpointError(
            f"{path}: the teacher (denoiser.*) is not an LDM UNet + VAE: {err}{neither}"
        ) from err
    out: dict[str, torch.Tensor] = {}
    base: dict[str, torch.Tensor] = {}
    for key, tensor in unet_state.items():
        if tensor is None:
            continue
        if match := _LORA_KEY.fullmatch(key):
            out[f"{_DCAC_UNET}{match[1]}.{match[2]}.default.weight"] = tensor
        elif _QKV_BIAS_KEY.fullmatch(key):
            out[_DCAC_UNET + key] = tensor
        else:
            base[key] = tensor
    _check_frozen_parts(base, vae_state, unet_config, vae_config, unexpected, path)
    _check_lora_rank(out, config.diffusion.lora_rank, path)
    out[DCAC_PROMPTS] = _prompts(state, num_ids, int(unet_config["cross_attention_dim"]), path)
    return out


def _split_teacher(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The UNet and VAE tensors under their original single-file prefixes, and the keys that fit neither."""
    ldm: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, tensor in state.items():
        if key == OFFICIAL_PROMPTS or key in _SCHEDULE_BUFFERS:
            continue
        if key.startswith(OFFICIAL_UNET) and key[len(OFFICIAL_UNET) :].startswith(_LDM_UNET_PARTS):
            ldm[ORIGINAL_UNET_PREFIX + key[len(OFFICIAL_UNET) :]] = tensor
        elif key.startswith(OFFICIAL_VAE):
            ldm["first_stage_model." + key[len(OFFICIAL_VAE) :]] = tensor
        else:
            unexpected.append(key)
    return ldm, unexpected


def _check_frozen_parts(unet_state, vae_state, unet_config, vae_config, unexpected, path) -> None:
    """Every base UNet / VAE tensor of the configured architecture present with its shape; nothing else."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        expected_unet = UNet2DConditionModel.from_config(dict(unet_config)).state_dict()
        expected_vae = AutoencoderKL.from_config(dict(vae_config)).state_dict()
    missing, shapes = [], []
    for kind, expected, got in (("UNet", expected_unet, unet_state), ("VAE", expected_vae, vae_state)):
        got = {k: v for k, v in got.items() if v is not None}
        missing += [f"{kind} {k}" for k in expected if k not in got]
        unexpected += [f"{kind} {k}" for k in got if k not in expected]
        shapes += [
            f"{kind} {k}: {tuple(got[k].shape)} vs {tuple(expected[k].shape)}"
            for k in expected
            if k in got and got[k].numel() != expected[k].numel()  # the VAE's 1x1-conv attention is reshaped
        ]
    if missing or unexpected:
        raise OfficialCheckpointError(
            f"{path}: the teacher (denoiser.*) does not match diffusion.preset: missing keys {show_keys(missing)}, "
            f"unexpected keys {show_keys(unexpected)}"
        )
    if shapes:
        raise OfficialCheckpointError(
            f"{path}: teacher tensors of the wrong shape (checkpoint vs config): {show_keys(shapes)}"
        )


def _check_lora_rank(tensors: dict[str, torch.Tensor], rank: int, path: str | Path) -> None:
    ranks = sorted({int(t.shape[0]) for k, t in tensors.items() if ".lora_A." in k})
    if not ranks:
        raise OfficialCheckpointError(f"{path}: the teacher has no loralib lora_A/lora_B tensors")
    if ranks != [rank]:
        raise OfficialCheckpointError(
            f"{path}: the teacher's LoRA rank is {ranks[0] if len(ranks) == 1 else ranks}, "
            f"the config has diffusion.lora_rank={rank}"
        )


def _prompts(state: dict[str, torch.Tensor], num_ids: int, context_dim: int, path: str | Path) -> torch.Tensor:
    prompts = state.get(OFFICIAL_PROMPTS)
    if prompts is None:
        raise OfficialCheckpointError(f"{path}: the teacher has no ID prompts '{OFFICIAL_PROMPTS}'")
    if tuple(prompts.shape) != (num_ids, context_dim):
        raise OfficialCheckpointError(
            f"{path}: '{OFFICIAL_PROMPTS}' has shape {tuple(prompts.shape)}, expected ({num_ids}, {context_dim}): "
            "one prompt per classifier identity, of the UNet's cross-attention width"
        )
    return prompts.float()


def load_teacher_init(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> list[str]:
    """Load imported teacher tensors into a dcac training module (``build_dcac``) in place.

    LoRA and prompts must all find their parameter. A q/k/v bias loads into the projection's bias when the
    model has one (as ``….bias`` or, under peft's wrapper, ``….base_layer.bias``); dcac's default teacher keeps
    those projections bias-free, so it has none. Returns the bias keys left unloaded.
    """
    own = model.state_dict()
    to_load: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for key, tensor in tensors.items():
        if _QKV_BIAS_KEY.fullmatch(key):
            target = next((t for t in (key, key[: -len("bias")] + "base_layer.bias") if t in own), None)
            if target is None:
                skipped.append(key)
                continue
            key = target
        if key not in own or own[key].shape != tensor.shape:
            raise OfficialCheckpointError(
                f"imported teacher tensor '{key}' {tuple(tensor.shape)} has no counterpart in the model "
                f"({tuple(own[key].shape) if key in own else 'no such key'}): do diffusion.* and the ids match?"
            )
        to_load[key] = tensor.to(own[key].dtype)
    model.load_state_dict(to_load, strict=False)
    return sorted(skipped)
