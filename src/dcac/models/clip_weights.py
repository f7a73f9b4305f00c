"""Loading pre-trained CLIP image-tower weights into :class:`CLIPReIDEncoder`.

Kept apart from the model definition (as diffusers separates modelling from loading). Accepted sources:

* a Hugging Face folder (``config.json`` + ``model.safetensors`` / ``pytorch_model.bin``, sharded or not)
  of a ``CLIPModel``, ``CLIPVisionModel`` or ``CLIPVisionModelWithProjection``;
* OpenAI's original ``ViT-B-16.pt``, a TorchScript archive (its tensors are read without running its code);
* a plain state dict (``.pt``/``.pth``/``.bin`` via ``torch.load(weights_only=True)``, or ``.safetensors``)
  in either the OpenAI layout (``visual.conv1.weight``, ...; the ``visual.`` prefix optional) or the
  Hugging Face layout (``vision_model.embeddings...``; the prefix optional, as in a saved encoder).

The pre-trained positional table (14×14+1 entries at 224 px) is resized once, here, to the encoder's
grid; afterwards it is an ordinary parameter fine-tuned at that size (docs/method.md §1).
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from dcac.models.reid_encoder import CLIPReIDEncoder
from dcac.models.torchscript_tensors import TorchScriptReadError, read_torchscript_tensors
from dcac.storage.weights_only_load import WeightsFileError, load_weights_only

logger = logging.getLogger(__name__)

# (source key, tensor) per encoder parameter name; the source key is kept for error messages.
ConvertedWeights = dict[str, tuple[str, torch.Tensor]]

_HF_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_HF_PATCH_KEY = "embeddings.patch_embedding.weight"
_POSITION_KEY = "embeddings.position_embedding.weight"
_PROJECTION_KEY = "visual_projection.weight"

# OpenAI top-level tower tensors → encoder names (``proj`` is handled apart: it is stored transposed).
_OPENAI_TOP_LEVEL = {
    "conv1.weight": "embeddings.patch_embedding.weight",
    "class_embedding": "embeddings.class_embedding",
    "positional_embedding": _POSITION_KEY,
    "ln_pre.weight": "pre_layrnorm.weight",
    "ln_pre.bias": "pre_layrnorm.bias",
    "ln_post.weight": "post_layernorm.weight",
    "ln_post.bias": "post_layernorm.bias",
}
# OpenAI residual-block tensors → names inside ``encoder.layers.N`` (``attn.in_proj_*`` is split apart).
_OPENAI_BLOCK = {
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}
_OPENAI_BLOCK_KEY = re.compile(r"transformer\.resblocks\.(\d+)\.(.+)")

# Architecture fields of a Hugging Face vision config that tensor shapes alone cannot verify
# (e.g. the head count) or that decide the shapes, compared against the encoder's config.
_HF_CONFIG_FIELDS = {
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "intermediate_size": "intermediate_size",
    "patch_size": "patch_size",
    "hidden_act": "hidden_act",
    "layer_norm_eps": "layer_norm_eps",
}


class CLIPWeightsError(ValueError):
    """A CLIP checkpoint that does not fit the encoder (names the file and the offending key)."""


def load_clip_vision_weights(encoder: CLIPReIDEncoder, path: str | Path, *, require_projection: bool = True) -> None:
    """Load a pre-trained CLIP image tower from ``path`` into ``encoder`` in place.

    Every encoder tensor must be provided with the right shape (the positional table excepted, which
    is resized bilinearly to the encoder's grid); anything else raises :class:`CLIPWeightsError`
    naming the file and the key. A ``CLIPVisionModel`` has no projection: loading one needs
    ``require_projection=False`` and keeps the encoder's own ``visual_projection``. The loaded keys
    are logged at INFO level. ``requires_grad`` flags (the frozen patch embedding) are unchanged.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"CLIP weights not found: {path}")
    if path.is_dir():
        _check_hf_config(path, encoder)
        weights_file, state = _read_hf_folder(path)
    else:
        weights_file, state = path, _read_state_dict_file(path)
    converted, layout = _convert(state, weights_file)
    tensors = _validate(encoder, converted, weights_file, require_projection)
    encoder.load_state_dict(tensors, strict=False)
    logger.info(
        "loaded %d CLIP vision tensors from %s (%s layout): %s",
        len(tensors),
        weights_file,
        layout,
        ", ".join(sorted(tensors)),
    )


def openai_vision_to_encoder_names(state: dict[str, torch.Tensor], path: Path) -> ConvertedWeights:
    """Rename an OpenAI-layout vision tower (``conv1.weight``, ``transformer.resblocks.N.*``, ``proj``, no
    ``visual.`` prefix) to the encoder's parameter names; ``path`` names the file in errors."""
    return _convert_openai(state, "", path)


def load_converted_vision_weights(encoder: CLIPReIDEncoder, state: dict[str, torch.Tensor], path: Path) -> list[str]:
    """Load an OpenAI-layout tower already read from ``path`` (another model's ``image_encoder.*``, prefix
    removed) with the checks and positional-table resize of :func:`load_clip_vision_weights`."""
    tensors = _validate(encoder, _convert_openai(state, "", path), path, require_projection=True)
    encoder.load_state_dict(tensors, strict=False)
    return sorted(tensors)


def _read_hf_folder(folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    for name in _HF_WEIGHT_FILES:
        candidate = folder / name
        if not candidate.is_file():
            continue
        if name.endswith(".index.json"):
            return candidate, _read_sharded(candidate)
        return candidate, _read_state_dict_file(candidate)
    raise FileNotFoundError(f"{folder} is not a Hugging Face CLIP folder: none of {', '.join(_HF_WEIGHT_FILES)} found")


def _read_sharded(index_file: Path) -> dict[str, torch.Tensor]:
    try:
        weight_map = json.loads(index_file.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError) as error:
        raise CLIPWeightsError(f"{index_file}: not a shard index with a 'weight_map' ({error})") from error
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        state.update(_read_state_dict_file(index_file.parent / shard))
    return state


def _read_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"CLIP weights file not found: {path}")
    if path.suffix == ".safetensors":
        return load_file(str(path), device="cpu")
    if is_torchscript_archive(path):
        # OpenAI distributes CLIP as TorchScript archives, which torch.load(weights_only=True) cannot
        # read and torch.jit.load would run code from; their tensors are read without running anything.
        try:
            return read_torchscript_tensors(path)
        except TorchScriptReadError as err:
            raise CLIPWeightsError(str(err)) from None
    try:
        state = load_weights_only(path)
    except WeightsFileError as err:
        raise CLIPWeightsError(str(err)) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CLIPWeightsError(f"{path}: expected a state dict mapping names to tensors")
    return state


def is_torchscript_archive(path: Path) -> bool:
    # Both torch.save and torch.jit.save write zip archives; only TorchScript ones carry
    # serialised code and constants.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def _check_hf_config(folder: Path, encoder: CLIPReIDEncoder) -> None:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder} is not a Hugging Face CLIP folder: no config.json")
    # AutoConfig fills the defaults a saved config.json may omit; a local folder needs no network.
    config = AutoConfig.from_pretrained(str(folder))
    vision = getattr(config, "vision_config", config)
    if getattr(vision, "model_type", None) not in ("clip_vision_model", "clip"):
        raise CLIPWeightsError(f"{config_file}: model_type {config.model_type!r} is not a CLIP model")
    for hf_field, our_field in _HF_CONFIG_FIELDS.items():
        theirs, ours = getattr(vision, hf_field), getattr(encoder.config, our_field)
        if theirs != ours:
            raise CLIPWeightsError(f"{config_file}: vision {hf_field} is {theirs!r}, the encoder expects {ours!r}")


def _convert(state: dict[str, torch.Tensor], path: Path) -> tuple[ConvertedWeights, str]:
    """Pick out the vision tower and rename it to the encoder's parameter names."""
    if "visual.conv1.weight" in state:
        return _convert_openai(state, "visual.", path), "OpenAI"
    if "conv1.weight" in state:
        return _convert_openai(state, "", path), "OpenAI"
    patch_keys = [k for k in state if k == _HF_PATCH_KEY or k.endswith("." + _HF_PATCH_KEY)]
    if len(patch_keys) == 1:
        return _convert_hf(state, patch_keys[0][: -len(_HF_PATCH_KEY)]), "Hugging Face"
    raise CLIPWeightsError(
        f"{path}: no CLIP vision tower found: expected 'visual.conv1.weight' (OpenAI layout) or "
        f"'vision_model.{_HF_PATCH_KEY}' (Hugging Face layout)"
    )


def _convert_hf(state: dict[str, torch.Tensor], prefix: str) -> ConvertedWeights:
    # The projection sits beside the tower: ``visual_projection`` next to ``vision_model``.
    outer = prefix[: -len("vision_model.")] if prefix.endswith("vision_model.") else prefix
    converted: ConvertedWeights = {}
    for key, tensor in state.items():
        if key == outer + _PROJECTION_KEY:
            converted[_PROJECTION_KEY] = (key, tensor)
        elif key.startswith(prefix) and key != prefix + "embeddings.position_ids":
            # position_ids is an index buffer some transformers versions saved; not a weight.
            converted[key[len(prefix) :]] = (key, tensor)
    return converted


def _convert_openai(state: dict[str, torch.Tensor], prefix: str, path: Path) -> ConvertedWeights:
    converted: ConvertedWeights = {}
    for key, tensor in state.items():
        if not key.startswith(prefix):
            continue  # text tower, logit scale, ...
        name = key[len(prefix) :]
        if name in _OPENAI_TOP_LEVEL:
            converted[_OPENAI_TOP_LEVEL[name]] = (key, tensor)
        elif name == "proj":
            # OpenAI applies ``x @ proj`` (D × P); nn.Linear stores the P × D transpose.
            converted[_PROJECTION_KEY] = (key, tensor.t())
        elif match := _OPENAI_BLOCK_KEY.fullmatch(name):
            layer, sub = match.groups()
            target = f"encoder.layers.{layer}."
            if sub in ("attn.in_proj_weight", "attn.in_proj_bias"):
                # nn.MultiheadAttention packs [q; k; v] along the output dimension.
                kind = sub.rsplit("_", 1)[1]
                if tensor.shape[0] % 3:
                    raise CLIPWeightsError(
                        f"{path}: '{key}' has shape {tuple(tensor.shape)}; expected 3·D rows (q, k, v)"
                    )
                for part, chunk in zip(("q", "k", "v"), tensor.chunk(3, dim=0)):
                    converted[f"{target}self_attn.{part}_proj.{kind}"] = (key, chunk)
            elif sub in _OPENAI_BLOCK:
                converted[target + _OPENAI_BLOCK[sub]] = (key, tensor)
            else:
                raise CLIPWeightsError(f"{path}: unrecognised CLIP block key '{key}'")
        else:
            raise CLIPWeightsError(f"{path}: unrecognised CLIP vision key '{key}'")
    return converted


def _validate(
    encoder: CLIPReIDEncoder,
    converted: ConvertedWeights,
    path: Path,
    require_projection: bool,
) -> dict[str, torch.Tensor]:
    """Check names and shapes against the encoder; resize the positional table to its grid."""
    expected = encoder.state_dict()
    unexpected = sorted(set(converted) - set(expected))
    if unexpected:
        source_key = converted[unexpected[0]][0]
        raise CLIPWeightsError(
            f"{path}: '{source_key}' has no counterpart '{unexpected[0]}' in the encoder "
            f"({len(unexpected)} such keys; does the checkpoint have more layers than configured?)"
        )
    tensors: dict[str, torch.Tensor] = {}
    for name, target in expected.items():
        if name not in converted:
            if name == _PROJECTION_KEY and not require_projection:
                logger.info("%s has no visual projection; the encoder keeps its own", path)
                continue
            hint = (
                " (a CLIPVisionModel has no projection: pass require_projection=False to keep a "
                "randomly initialised one)"
                if name == _PROJECTION_KEY
                else ""
            )
            raise CLIPWeightsError(f"{path}: missing the tensor for encoder key '{name}'{hint}")
        source_key, tensor = converted[name]
        if name == _POSITION_KEY and tensor.ndim == 2 and tensor.shape[0] != target.shape[0]:
            old_rows = tensor.shape[0]
            try:
                tensor = CLIPReIDEncoder.resize_position_embedding(tensor, encoder.config.grid_size)
            except ValueError as error:
                raise CLIPWeightsError(f"{path}: cannot resize '{source_key}': {error}") from error
            logger.info(
                "resized '%s' from %d to %d positions (grid %s)",
                source_key,
                old_rows,
                tensor.shape[0],
                encoder.config.grid_size,
            )
        if tensor.shape != target.shape:
            raise CLIPWeightsError(
                f"{path}: '{source_key}' has shape {tuple(tensor.shape)}, but encoder key "
                f"'{name}' needs {tuple(target.shape)}"
            )
        tensors[name] = tensor
    return tensors
