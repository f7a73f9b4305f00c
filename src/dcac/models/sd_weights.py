"""Building and loading the Stable Diffusion v1.5 UNet and VAE, offline.

Two on-disk formats are accepted:

* a diffusers folder with `unet/` and `vae/` subfolders (each holding `config.json` and the
  weights), loaded with `from_pretrained(..., local_files_only=True)`;
* the original single-file checkpoint (`v1-5-pruned.ckpt` or a `.safetensors` file in the same
  key layout: `model.diffusion_model.*` for the UNet, `first_stage_model.*` for the VAE). It is
  loaded with diffusers' public `from_single_file`, driven by a local diffusers config (SD v1.5's by
  default), so no hub access is needed (`dcac.models.single_file`).

The text encoder stored in a single file is ignored: DCAC never uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file as load_safetensors

from dcac.models.sd_configs import sd15_unet_config, sd15_vae_config
from dcac.models.single_file import SingleFileMismatchError, convert_single_file
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

    Tensors inside the UNet's attention blocks that the architecture lacks (LoRA matrices, q/k/v biases of a
    fine-tuned UNet) are kept under their diffusers names. `source` names the file in error messages.
    """
    unet, extras, vae = _convert(state_dict, unet_config, vae_config, source)
    return {**unet.state_dict(), **extras}, vae.state_dict()


def _convert(
    state_dict: Mapping[str, torch.Tensor], unet_config: Mapping[str, Any], vae_config: Mapping[str, Any], source: str
) -> tuple[UNet2DConditionModel, dict[str, torch.Tensor], AutoencoderKL]:
    if not any(key.startswith(ORIGINAL_UNET_PREFIX) for key in state_dict):
        raise StableDiffusionWeightsError(
            f"{source}: no UNet keys (expected keys starting with {ORIGINAL_UNET_PREFIX!r}); "
            "is this an original Stable Diffusion checkpoint?"
        )
    if not any(key.startswith(ORIGINAL_VAE_PREFIXES) for key in state_dict):
        raise StableDiffusionWeightsError(
            f"{source}: no VAE keys (expected keys starting with one of {ORIGINAL_VAE_PREFIXES})"
        )
    try:
        return convert_single_file(
            state_dict,
            unet_config,
            vae_config,
            unet_prefix=ORIGINAL_UNET_PREFIX,
            vae_prefixes=ORIGINAL_VAE_PREFIXES,
            source=source,
        )
    except SingleFileMismatchError as err:
        raise StableDiffusionWeightsError(str(err)) from None


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
    unet, extras, vae = _convert(read_checkpoint_state_dict(path), unet_config, vae_config, str(path))
    if extras:
        raise StableDiffusionWeightsError(
            f"{path} (UNet): {len(extras)} tensors the architecture has no place for (e.g. {sorted(extras)[:5]})"
        )
    if dtype != torch.float32:
        unet, vae = unet.to(dtype), vae.to(dtype)
    return unet, vae
