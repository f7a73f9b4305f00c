"""Original (LDM) single-file Stable Diffusion tensors → diffusers models, through diffusers' public API.

``from_single_file(state_dict, config=<folder with config.json>)`` converts the keys and loads the model; dcac
writes its (local) config into a temporary folder, so nothing is fetched. Two things it does not do are done here:

- it keeps only the tensors the architecture has, but a fine-tuned UNet (the official DCAC teacher) carries more
  inside its attention blocks (LoRA matrices, q/k/v biases). Those are renamed by the attention-block rule
  below — diffusers renames an attention block's prefix and keeps everything under it — and passed through;
- it warns or fails obscurely on a file that does not fit the config; here every mismatch is an error naming
  the file: shapes, tensors the config needs and the file lacks, tensors of the file the config does not use.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

_ATTENTION_BLOCK = re.compile(r"(input_blocks|output_blocks)\.(\d+)\.1\.(.+)|middle_block\.1\.(.+)")


class SingleFileMismatchError(ValueError):
    """Tensors of a single file that do not fit the architecture config; the message names the file."""


def attention_block_name(key: str, config: Mapping[str, Any]) -> str | None:
    """The diffusers name of an original UNet key (without ``model.diffusion_model.``) inside an attention
    block, or ``None`` when the key is not in one."""
    match = _ATTENTION_BLOCK.fullmatch(key)
    if match is None:
        return None
    if match[4] is not None:
        return f"mid_block.attentions.0.{match[4]}"
    stride, index = int(config["layers_per_block"]) + 1, int(match[2])
    if match[1] == "input_blocks":
        block, position, kinds = (index - 1) // stride, (index - 1) % stride, config["down_block_types"]
        return f"down_blocks.{block}.attentions.{position}.{match[3]}" if "CrossAttn" in kinds[block] else None
    block, position = index // stride, index % stride
    # In an up block without attention, ``.1.`` is its upsampler.
    if "CrossAttn" not in config["up_block_types"][block]:
        return None
    return f"up_blocks.{block}.attentions.{position}.{match[3]}"


def _expected_keys(model_class, config: Mapping[str, Any]) -> set[str]:
    with torch.device("meta"):
        return set(model_class.from_config(dict(config)).state_dict())


def _recording(model_class):
    """``model_class`` that keeps what ``load_state_dict`` reports: diffusers' loader discards the missing keys."""

    class Recording(model_class):
        incompatible = None

        def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
            result = super().load_state_dict(state_dict, strict=strict, assign=assign)
            self.incompatible = result
            return result

    Recording.__name__ = Recording.__qualname__ = model_class.__name__  # the name diffusers' configs record
    return Recording


def load_component(model_class, tensors: dict[str, torch.Tensor], config: Mapping[str, Any], source: str):
    """``model_class.from_single_file`` of ``tensors`` with ``config``; meta tensors give a meta model."""
    meta = any(t.is_meta for t in tensors.values())
    # Real tensors: into an initialised model, so that what the file lacks is reported rather than left empty.
    options = {"device": "meta"} if meta else {"low_cpu_mem_usage": False}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "config.json").write_text(json.dumps({"_class_name": model_class.__name__, **config}))
        try:
            model = _recording(model_class).from_single_file(tensors, config=folder, local_files_only=True, **options)
        except (ValueError, KeyError, RuntimeError) as err:
            reason = " ".join(str(err).split())  # torch's message spans lines; the CLI prints one
            raise SingleFileMismatchError(f"{source}: weights do not match the architecture config: {reason}") from None
    incompatible, model.__class__ = model.incompatible, model_class
    missing = sorted(incompatible.missing_keys if incompatible else ())
    missing += sorted(k for k, t in model.state_dict().items() if t.is_meta and not meta)  # older diffusers
    if missing:
        raise SingleFileMismatchError(
            f"{source}: weights do not match the architecture config: {len(missing)} missing (e.g. {missing[:5]})"
        )
    return model


def split_unet_extras(
    unet_tensors: dict[str, torch.Tensor], config: Mapping[str, Any], prefix: str
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(tensors the architecture has, extras under their diffusers names) of the UNet's original keys."""
    expected = _expected_keys(UNet2DConditionModel, config)
    base, extras = {}, {}
    for key, tensor in unet_tensors.items():
        name = attention_block_name(key[len(prefix) :], config)
        if name is not None and name not in expected:
            extras[name] = tensor
        else:
            base[key] = tensor
    return base, extras


def check_all_used(tensors: dict[str, torch.Tensor], model: torch.nn.Module, source: str) -> None:
    """The conversion is one to one: a file with more tensors than the model has blocks the config lacks."""
    count = len(model.state_dict())
    if len(tensors) > count:
        raise SingleFileMismatchError(
            f"{source}: weights do not match the architecture config: the file has {len(tensors)} tensors, "
            f"the config's model {count}: it has blocks or layers the config does not describe"
        )


def convert_single_file(
    state_dict: Mapping[str, torch.Tensor],
    unet_config: Mapping[str, Any],
    vae_config: Mapping[str, Any],
    *,
    unet_prefix: str,
    vae_prefixes: tuple[str, ...],
    source: str,
) -> tuple[UNet2DConditionModel, dict[str, torch.Tensor], AutoencoderKL]:
    """(UNet, the UNet's extra attention-block tensors under diffusers names, VAE) of an original state dict."""
    unet_tensors = {k: v for k, v in state_dict.items() if k.startswith(unet_prefix)}
    vae_prefix = next(p for p in vae_prefixes if any(k.startswith(p) for k in state_dict))
    vae_tensors = {k: v for k, v in state_dict.items() if k.startswith(vae_prefix)}
    base, extras = split_unet_extras(unet_tensors, unet_config, unet_prefix)
    unet = load_component(UNet2DConditionModel, base, unet_config, f"{source} (UNet)")
    check_all_used(base, unet, f"{source} (UNet)")
    vae = load_component(AutoencoderKL, vae_tensors, vae_config, f"{source} (VAE)")
    check_all_used(vae_tensors, vae, f"{source} (VAE)")
    return unet, extras, vae
