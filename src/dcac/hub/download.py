"""Hugging Face Hub ids wherever dcac takes a weights path: ``org/name`` (or ``org/name@revision``).

A value that exists on disk is a local path, exactly as before; anything else shaped like a repository id
is fetched into (or found in) the Hub cache with ``huggingface_hub.snapshot_download`` and replaced by the
snapshot folder.  ``HF_HUB_CACHE`` / ``HF_HOME`` choose the cache and ``HF_HUB_OFFLINE=1`` forbids network
access; both are read when a value is resolved, not when Python starts.  Only the files a loader reads are
fetched (safetensors and JSON; never pickles), so a CLIP repository does not bring its TensorFlow and Flax
copies along.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from dcac.storage.run_folder import PUBLISHED_FILES

# owner/name[@revision]: what the Hub accepts as a model repository id (96 characters at most).
_REPO_ID = re.compile(
    r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})(?:@(?P<revision>[\w./-]+))?$"
)

# A missing "dir/ViT-B-16.pt" is a mistyped local file, not a repository: it keeps its file-not-found error.
_WEIGHT_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".json", ".yaml")

#: A pushed run (``dcac.hub.upload``): its model, card, metrics and the threshold ``dcac calibrate`` stored.
RUN_FILES = (*PUBLISHED_FILES, "*.md", "metrics*.json")
CLIP_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "model-*.safetensors")
# A diffusers-format repository (stable-diffusion-v1-5/stable-diffusion-v1-5): the fp32 UNet and VAE only, not
# the repository's fp16/non-EMA variants, text encoder or safety checker, which training never reads.
DIFFUSERS_FILES = (
    "model_index.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
)


class HubResolutionError(FileNotFoundError):
    """A value that is neither a local path nor a Hub repository dcac can get; the message says which and why."""


def parse_hub_id(value: str | os.PathLike) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` when ``value`` is not an existing path and looks like ``org/name[@rev]``."""
    text = str(value)
    if Path(text).exists() or text.startswith((".", "/", "~")) or text.lower().endswith(_WEIGHT_FILE_SUFFIXES):
        return None
    match = _REPO_ID.match(text)
    return (match.group("repo"), match.group("revision")) if match else None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def snapshot_path(repo_id: str, revision: str | None, allow_patterns: Sequence[str], *, what: str) -> Path:
    """The local snapshot folder of ``repo_id`` (downloaded unless cached or offline)."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError as err:
        raise HubResolutionError(
            f"{what} {repo_id!r} is a Hub id but huggingface_hub is missing: pip install 'dcac[hub]'"
        ) from err
    offline = _offline()
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=list(allow_patterns),
            cache_dir=os.environ.get("HF_HUB_CACHE") or None,
            local_files_only=offline,
        )
    except (LocalEntryNotFoundError, RepositoryNotFoundError, HfHubHTTPError, OSError) as err:
        where = os.environ.get("HF_HUB_CACHE") or "the default Hugging Face cache"
        reason = (
            "HF_HUB_OFFLINE=1 and it is not in"
            if offline
            else f"it could not be downloaded ({type(err).__name__}) and is not in"
        )
        raise HubResolutionError(
            f"{what} {repo_id!r}: no such local path, and as a Hub repository {reason} {where}; "
            "download it once with network access (or unset HF_HUB_OFFLINE), or pass a local path"
        ) from err
    return Path(folder)


def resolve_weights(
    value: str | os.PathLike | None, allow_patterns: Sequence[str], *, what: str
) -> str | os.PathLike | None:
    """``value`` unchanged when it is ``None`` or a local path; the snapshot folder when it is a Hub id."""
    if value is None:
        return None
    hub_id = parse_hub_id(value)
    if hub_id is None:
        return value
    return str(snapshot_path(*hub_id, allow_patterns, what=what))
