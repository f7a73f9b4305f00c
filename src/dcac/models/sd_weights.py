"""Building and loading the Stable Diffusion v1.5 UNet and VAE, offline.

Two on-disk formats are accepted:

* a diffusers folder with `unet/` and `vae/` subfolders (each holding `config.json` and the
  weights), loaded with `from_pretrained(..., local_files_only=True)`;
* the original single-file checkpoint (`v1-5-pruned.ckpt` or a `.safetensors` file in the same
  key layout: `model.diffusion_model.*` for the UNet, `first_stage_model.*` for the VAE). Its
  keys are converted with diffusers' own LDM->diffusers conversion functions, driven by a local
  diffusers config (SD v1.5's by default), so no hub access is needed.

The text encoder stored in a single file is ignored: DCAC never uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
from safetensors.torch import load_file as load_safetensors

from dcac.models.sd_configs import sd15_unet_config, sd15_vae_config
from dcac.storage.weights_only_load import WeightsFileError, load_weights_only

#: Key prefix of the UNet in an original (LDM) Stable Diffusion checkpoint.
ORIGINAL_UNET_PREFIX = "model.diffusion_model."
#: Key prefixes the VAE may carry in an original checkpoint.
ORIGINAL_VAE_PREFIXES = ("first_stage_model.", "vae.")

_PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class StableDiffusionWeightsError(ValueError):
    """A Stable Diffusion weight file or folder is missing pieces or does not match the config."""


def build_unet(config: Mapping[str, Any]) -> UNet2DConditionModel:
    """A randomly initialised `UNet2DConditionModel` from a diffusers config dict."""
    return UNet2DConditionModel.from_config(dict(config))


def build_vae(config: Mapping[str, Any]) -> AutoencoderKL:
    """A randomly initialised `AutoencoderKL` from a diffusers config dict."""
    return AutoencoderKL.from_config(dict(config))


def load_stable_diffusion(
    path: str | Path,
    *,
    unet_config: Mapping[str, Any] | None = None,
    vae_config: Mapping[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[UNet2DConditionModel, AutoencoderKL]:
    """Load (unet, vae) from a diffusers folder or an original single-file checkpoint.

    `unet_config` / `vae_config` describe the architecture stored in a single file (default:
    SD v1.5). A diffusers folder carries its own `config.json` files, so passing configs with a
    folder is an error rather than being silently ignored.
    """
    path = Path(path)
    if path.is_dir():
        if unet_config is not None or vae_config is not None:
            raise ValueError(
                f"{path} is a diffusers folder whose unet/ and vae/ carry their own config.json; "
                "unet_config/vae_config apply only to single-file checkpoints"
            )
        return _load_diffusers_folder(path, dtype)
    if path.is_file():
        unet_config = dict(unet_config) if unet_config is not None else sd15_unet_config()
        vae_config = dict(vae_config) if vae_config is not None else sd15_vae_config()
        return _load_single_file(path, unet_config, vae_config, dtype)
    raise FileNotFoundError(
        f"Stable Diffusion weights not found: {path} (expected a diffusers folder or a single file)"
    )


def read_checkpoint_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The flat tensor dict of a `.safetensors` or pickled (`.ckpt`/`.pt`) checkpoint, unwrapping `state_dict`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return load_safetensors(str(path), device="cpu")
    if suffix not in _PICKLE_SUFFIXES:
        raise StableDiffusionWeightsError(
            f"{path}: unsupported checkpoint suffix {suffix!r}; expected .safetensors or one of {_PICKLE_SUFFIXES}"
        )
    try:
        checkpoint = load_weights_only(path)
    except WeightsFileError as error:
        raise StableDiffusionWeightsError(str(error)) from None
    # Lightning checkpoints (the original SD release) nest the weights, sometimes more than once.
    while isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping):
        raise StableDiffusionWeightsError(f"{path}: expected a dict of tensors, found {type(checkpoint).__name__}")
    return dict(checkpoint)


def convert_original_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    unet_config: Mapping[str, Any],
    vae_config: Mapping[str, Any],
    *,
    source: str = "checkpoint",
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Convert an original-layout SD state dict into diffusers (unet, vae) state dicts.

    `source` names the file in error messages.
    """
    if not any(key.startswith(ORIGINAL_UNET_PREFIX) for key in state_dict):
        raise StableDiffusionWeightsError(
            f"{source}: no UNet keys (expected keys starting with {ORIGINAL_UNET_PREFIX!r}); "
            "is this an original Stable Diffusion checkpoint?"
        )
    if not any(key.startswith(ORIGINAL_VAE_PREFIXES) for key in state_dict):
        raise StableDiffusionWeightsError(
            f"{source}: no VAE keys (expected keys starting with one of {ORIGINAL_VAE_PREFIXES})"
        )
    state_dict = dict(state_dict)
    unet_state = convert_ldm_unet_checkpoint(state_dict, dict(unet_config))
    vae_state = convert_ldm_vae_checkpoint(state_dict, dict(vae_config))
    return unet_state, vae_state


def _load_diffusers_folder(path: Path, dtype: torch.dtype) -> tuple[UNet2DConditionModel, AutoencoderKL]:
    for sub in ("unet", "vae"):
        if not (path / sub / "config.json").is_file():
            raise FileNotFoundError(f"{path / sub / 'config.json'} missing: a diffusers folder needs unet/ and vae/")
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", local_files_only=True, torch_dtype=dtype)
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", local_files_only=True, torch_dtype=dtype)
    return unet, vae


def _load_single_file(
    path: Path, unet_config: dict[str, Any], vae_config: dict[str, Any], dtype: torch.dtype
) -> tuple[UNet2DConditionModel, AutoencoderKL]:
    unet_state, vae_state = convert_original_state_dict(
        read_checkpoint_state_dict(path), unet_config, vae_config, source=str(path)
    )
    unet = build_unet(unet_config)
    vae = build_vae(vae_config)
    _load_exactly(unet, unet_state, f"{path} (UNet)")
    _load_exactly(vae, vae_state, f"{path} (VAE)")
    if dtype != torch.float32:
        unet, vae = unet.to(dtype), vae.to(dtype)
    return unet, vae


def _load_exactly(model: torch.nn.Module, state: dict[str, torch.Tensor | None], source: str) -> None:
    """load_state_dict(strict) with an error that names the file and the offending keys."""
    # The diffusers converters write None for keys they expected but did not find.
    absent = sorted(key for key, value in state.items() if value is None)
    state = {key: value for key, value in state.items() if value is not None}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state)) + absent
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{key}: file {tuple(state[key].shape)} vs config {tuple(expected[key].shape)}"
        for key in sorted(set(state) & set(expected))
        if state[key].shape != expected[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[:5]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:5]})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (e.g. {mismatched[:3]})")
    if problems:
        raise StableDiffusionWeightsError(
            f"{source}: weights do not match the architecture config: " + "; ".join(problems)
        )
    model.load_state_dict(state, strict=True)
