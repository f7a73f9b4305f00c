"""Which trained weights produced a set of features: a SHA-256 of the weights file, recorded at extraction.

Features of two different checkpoints live in two different feature spaces; ranking one against the other
gives confident nonsense.  A path says little (a run folder can be retrained in place, copied, renamed),
so ``dcac extract`` records the hash of the weights file's bytes and ``dcac search`` compares it with the
hash of the checkpoint it is given.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_READ_BLOCK = 1 << 20


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_READ_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


class FeatureSpaceMismatchError(ValueError):
    """Stored features come from other weights than the model about to be compared with them."""


def check_same_weights(features_file: str | Path, stored_checkpoint: str, stored_sha256: str, checkpoint: str, sha256: str) -> str | None:
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
