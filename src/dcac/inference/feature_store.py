"""Features saved by ``dcac extract``: one safetensors file holding the features and their image names.

Layout: tensor ``features`` (``num_images × dim``, float32, L2-normalised rows) and string metadata

- ``format``: ``dcac-features/1``
- ``names``: JSON list of image paths, relative to ``root`` (row ``i`` of ``features`` is ``names[i]``)
- ``root``: the absolute folder the images were read from (so a search page can show them later)
- ``after_bn``: ``"true"`` / ``"false"``: which feature (``f_bn`` or ``f``) was extracted
- ``checkpoint``: the run folder or weights file the features come from
- ``weights_sha256``: SHA-256 of that weights file, so a search can tell whether a model matches the features

Keeping the names inside the same file means features and names cannot drift apart.  Read them with
``safetensors.safe_open(path, "pt").metadata()`` or ``load_features``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from dcac.storage.checkpoint import save_tensors_atomic

FEATURES_FORMAT = "dcac-features/1"
FEATURES_KEY = "features"


class FeatureFileError(ValueError):
    """A features file that is not one ``dcac extract`` wrote; the message names the file."""


@dataclass(frozen=True)
class FeatureSet:
    features: torch.Tensor
    names: list[str]
    root: Path
    after_bn: bool
    checkpoint: str
    weights_sha256: str = ""

    def paths(self) -> list[Path]:
        return [self.root / name for name in self.names]


def save_features(path: str | Path, feature_set: FeatureSet) -> None:
    if feature_set.features.shape[0] != len(feature_set.names):
        raise ValueError(f"{feature_set.features.shape[0]} feature rows but {len(feature_set.names)} names")
    metadata = {
        "format": FEATURES_FORMAT,
        "names": json.dumps(feature_set.names),
        "root": str(Path(feature_set.root).resolve()),
        "after_bn": "true" if feature_set.after_bn else "false",
        "checkpoint": feature_set.checkpoint,
        "weights_sha256": feature_set.weights_sha256,
    }
    save_tensors_atomic({FEATURES_KEY: feature_set.features.float()}, path, metadata=metadata)


def load_features(path: str | Path) -> FeatureSet:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if FEATURES_KEY not in handle.keys():
                raise FeatureFileError(f"{path} has no '{FEATURES_KEY}' tensor: not a dcac features file")
            features = handle.get_tensor(FEATURES_KEY)
    except FeatureFileError:
        raise
    except Exception as err:  # safetensors raises several error types for a truncated/corrupt file
        raise FeatureFileError(f"cannot read features file {path}: {err}") from err
    if metadata.get("format") != FEATURES_FORMAT:
        raise FeatureFileError(f"{path} metadata 'format' is {metadata.get('format')!r}, expected {FEATURES_FORMAT!r}")
    try:
        names = json.loads(metadata["names"])
    except (KeyError, json.JSONDecodeError) as err:
        raise FeatureFileError(f"{path} metadata 'names' is missing or not JSON: {err}") from err
    if len(names) != features.shape[0]:
        raise FeatureFileError(f"{path} has {features.shape[0]} feature rows but {len(names)} names")
    return FeatureSet(
        features=features,
        names=names,
        root=Path(metadata.get("root", ".")),
        after_bn=metadata.get("after_bn", "true") == "true",
        checkpoint=metadata.get("checkpoint", ""),
        weights_sha256=metadata.get("weights_sha256", ""),
    )


# Features of two checkpoints live in two feature spaces: ranking one against the other gives confident nonsense.
# A path says little (a run can be retrained in place, copied, renamed), so extraction records the SHA-256 of the
# weights file's bytes and a search compares it with the hash of the checkpoint it is given.
_READ_BLOCK = 1 << 20


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_READ_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


class FeatureSpaceMismatchError(ValueError):
    """Stored features come from other weights than the model about to be compared with them."""


def check_same_weights(
    features_file: str | Path, stored_checkpoint: str, stored_sha256: str, checkpoint: str, sha256: str
) -> str | None:
    """Raise when the stored hash differs from ``sha256``; a warning text when the file has no hash."""
    if not stored_sha256:
        return (
            f"warning: {features_file} records no weights hash (written by an older dcac), so it cannot be checked "
            f"that its features come from {checkpoint} (it names {stored_checkpoint or 'no checkpoint'})"
        )
    if stored_sha256 != sha256:
        raise FeatureSpaceMismatchError(
            f"{features_file} was extracted with {stored_checkpoint} (weights sha256 {stored_sha256[:12]}) but "
            f"--checkpoint {checkpoint} has weights sha256 {sha256[:12]}: the two feature spaces cannot be compared; "
            f"re-extract the gallery with {checkpoint}"
        )
    return None
