"""The authors' released DCAC checkpoints and CLIP-ReID checkpoints, mapped onto dcac's Re-ID model.

A released DCAC checkpoint (``source_ma.pth`` ... ``source_d+ms+c3.pth``) is ``torch.save(model.state_dict())``
of the official training module, keys optionally prefixed ``module.`` (DataParallel):

* ``encoder.image_encoder.*``: the CLIP image tower in OpenAI's layout (``conv1``, ``class_embedding``,
  ``positional_embedding`` already at the Re-ID grid, ``transformer.resblocks.N.*``, ``ln_post``, ``proj``);
* ``encoder.bnneck.*``: the BNNeck on the projected class token;
* ``encoder.fc.weight``: the bias-free ID classifier (N_ids × 512);
* ``denoiser.*``: the diffusion teacher (LDM UNet with loralib LoRA, ID prompts, VAE, noise schedule),
  handled by :mod:`dcac.models.official_teacher`.

The test-time feature of the official code is the BNNeck output in eval mode, L2-normalised, which is what
:meth:`ReIDModel.extract` computes, so an imported model gives the official feature unchanged.

A CLIP-ReID checkpoint (Li et al., AAAI 2023; the official DCAC code can start from one) holds the same
tower under ``image_encoder.*`` with ``bottleneck_proj.*`` / ``classifier_proj.*`` on the 512-d projection
(and text-side parts dcac does not use).
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path

import torch

from dcac.models.clip_weights import CLIPWeightsError, openai_vision_to_encoder_names
from dcac.models.reid_model import ReIDModel
from dcac.storage.checkpoint import CheckpointError

logger = logging.getLogger(__name__)

OFFICIAL_TOWER = "encoder.image_encoder."
OFFICIAL_BNNECK = "encoder.bnneck."
OFFICIAL_CLASSIFIER = "encoder.fc.weight"
OFFICIAL_TEACHER = "denoiser."
_DATA_PARALLEL = "module."

CLIPREID_TOWER = "image_encoder."
CLIPREID_BNNECK = "bottleneck_proj."
CLIPREID_CLASSIFIER = "classifier_proj.weight"
_SHOWN_KEYS = 8


class OfficialCheckpointError(CheckpointError):
    """A checkpoint that is not in the layout expected; the message names the file and the keys."""


def read_torch_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The flat name → tensor dict a ``.pth`` holds, read with ``weights_only=True``, ``module.`` stripped.

    Refused, naming the file: an empty or damaged file, a key present both with and without ``module.``, and a
    tensor whose shape claims more values than the file stores for it (nothing is allocated for such a shape).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise OfficialCheckpointError(f"{path}: the file is empty (0 bytes), not a torch checkpoint")
    try:
        # Memory-mapped when the file allows it: a released checkpoint with its teacher is ~4 GB.
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError:
        raise OfficialCheckpointError(
            f"{path}: cannot be read with torch.load(weights_only=True): damaged, or it pickles objects other "
            "than tensors"
        ) from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError) as err:
        raise OfficialCheckpointError(
            f"{path}: cannot be read with torch.load(weights_only=True) (damaged or not a torch file): "
            f"{_first_line(err)}"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise OfficialCheckpointError(f"{path}: expected a state dict mapping names to tensors")
    plain: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        name = key.removeprefix(_DATA_PARALLEL)
        if name in plain:
            # Which of the two copies is the model cannot be told; picking one would be a silent guess.
            raise OfficialCheckpointError(
                f"{path}: holds both '{name}' and '{_DATA_PARALLEL}{name}', two copies of one weight: keep one"
            )
        _check_stored_size(tensor, key, path)
        plain[name] = tensor
    return plain


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _check_stored_size(tensor: torch.Tensor, key: str, path: Path) -> None:
    """A shape that needs more bytes than the file stores for it (a zero stride) is refused before any copy."""
    needed, stored = tensor.numel() * tensor.element_size(), tensor.untyped_storage().nbytes()
    if needed > stored:
        raise OfficialCheckpointError(
            f"{path}: '{key}' claims shape {tuple(tensor.shape)} ({needed} bytes), but the file stores {stored} "
            "bytes for it: a damaged or crafted checkpoint"
        )


def official_num_ids(state: dict[str, torch.Tensor], path: str | Path) -> int:
    """The training identity count of a released checkpoint: the rows of its classifier."""
    classifier = state.get(OFFICIAL_CLASSIFIER)
    if classifier is None or classifier.ndim != 2:
        raise OfficialCheckpointError(
            f"{path}: no '{OFFICIAL_CLASSIFIER}' (N_ids x feature) tensor: not an official DCAC checkpoint"
        )
    return int(classifier.shape[0])


def official_reid_state(state: dict[str, torch.Tensor], model: ReIDModel, path: str | Path) -> dict[str, torch.Tensor]:
    """The Re-ID part of a released checkpoint under ``model``'s names, checked key by key and shape by shape.

    Every key outside ``denoiser.*`` must be one the Re-ID model uses; anything else (or a tensor the model
    needs and the file lacks) is an error naming the missing and unexpected keys.
    """
    tower = {k[len(OFFICIAL_TOWER) :]: v for k, v in state.items() if k.startswith(OFFICIAL_TOWER)}
    try:
        renamed = openai_vision_to_encoder_names(tower, Path(path))
    except CLIPWeightsError as err:
        raise OfficialCheckpointError(str(err)) from err
    # dcac name -> (official key, tensor), the official key kept for messages.
    converted = {"encoder." + name: (OFFICIAL_TOWER + key, t) for name, (key, t) in renamed.items()}
    unexpected: list[str] = []
    for key, tensor in state.items():
        if key.startswith((OFFICIAL_TOWER, OFFICIAL_TEACHER)):
            continue
        if key.startswith(OFFICIAL_BNNECK):
            converted["bottleneck." + key[len(OFFICIAL_BNNECK) :]] = (key, tensor)
        elif key == OFFICIAL_CLASSIFIER:
            converted["classifier.weight"] = (key, tensor)
        else:
            unexpected.append(key)
    expected = model.state_dict()
    unexpected += [key for name, (key, _) in converted.items() if name not in expected]
    missing = [k for k in expected if k not in converted]
    if missing or unexpected:
        raise OfficialCheckpointError(
            f"{path}: not the layout of an official DCAC checkpoint for this model: "
            f"missing keys {show_keys(missing)} (dcac names), unexpected keys {show_keys(unexpected)}"
        )
    tensors: dict[str, torch.Tensor] = {}
    for name, target in expected.items():
        key, tensor = converted[name]
        if tensor.shape != target.shape:
            raise OfficialCheckpointError(
                f"{path}: '{key}' has shape {tuple(tensor.shape)}, the configured model needs {tuple(target.shape)} "
                f"(does encoder.preset / data.height x data.width match the checkpoint?)"
            )
        # Released weights may be half precision; the model (and its BN statistics) run in float32.
        tensors[name] = tensor.to(target.dtype)
    return tensors


def show_keys(keys: list[str]) -> str:
    more = f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else ""
    return f"{sorted(keys)[:_SHOWN_KEYS]}{more}" if keys else "none"


def is_clipreid_state(state: dict[str, torch.Tensor]) -> bool:
    return CLIPREID_TOWER + "conv1.weight" in state


def load_clipreid_start(model: ReIDModel, state: dict[str, torch.Tensor], path: str | Path) -> list[str]:
    """Start ``model`` from a CLIP-ReID ViT-B/16 checkpoint: the tower, the 512-d BNNeck and, when its
    identity count equals the model's, the 512-d classifier. Returns the dcac names loaded.

    The positional table is resized to the model's grid if the checkpoint was trained at another size.
    """
    from dcac.models.clip_weights import load_converted_vision_weights

    tower = {k[len(CLIPREID_TOWER) :]: v for k, v in state.items() if k.startswith(CLIPREID_TOWER)}
    loaded = ["encoder." + name for name in load_converted_vision_weights(model.encoder, tower, Path(path))]
    heads = {"bottleneck." + k[len(CLIPREID_BNNECK) :]: v for k, v in state.items() if k.startswith(CLIPREID_BNNECK)}
    classifier = state.get(CLIPREID_CLASSIFIER)
    if classifier is not None and model.classifier is not None:
        if tuple(classifier.shape) == tuple(model.classifier.weight.shape):
            heads["classifier.weight"] = classifier
        else:
            logger.warning(
                "%s: '%s' is for %d identities, the model has %d: the classifier keeps its random start",
                path,
                CLIPREID_CLASSIFIER,
                classifier.shape[0],
                model.classifier.weight.shape[0],
            )
    expected = model.state_dict()
    for name, tensor in heads.items():
        if name not in expected or tensor.shape != expected[name].shape:
            raise OfficialCheckpointError(
                f"{path}: CLIP-ReID key for '{name}' has shape {tuple(tensor.shape)}, the model needs "
                f"{tuple(expected[name].shape) if name in expected else 'no such key'}"
            )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in heads.items()}, strict=False)
    logger.info("started from CLIP-ReID checkpoint %s: %d tensors", path, len(loaded) + len(heads))
    return loaded + sorted(heads)


def load_encoder_start(model: ReIDModel, path: str | Path) -> None:
    """``encoder.weights``: a CLIP-ReID checkpoint (tower + 512-d heads) or any CLIP file ``clip_weights`` reads."""
    from dcac.models.clip_weights import is_torchscript_archive, load_clip_vision_weights

    path = Path(path)
    if path.is_file() and path.suffix in (".pth", ".pt", ".bin") and not is_torchscript_archive(path):
        # A plain state dict is read here once to recognise CLIP-ReID's layout; other layouts are read again
        # by clip_weights (a one-off cost at the start of training).
        state = read_torch_state_dict(path)
        if is_clipreid_state(state):
            load_clipreid_start(model, state, path)
            return
    load_clip_vision_weights(model.encoder, path)
