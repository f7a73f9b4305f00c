"""Seeded identity splits for the small test sets of the classic multi-source protocol.

iLIDS, PRID and VIPeR have no official train/test split file that ships with the images (GRID's
published partitions are read when present, see ``grid``); the classic protocol (torchreid, DualNorm, M3L, META) draws 10 random identity splits, evaluates on each and
averages. dcac draws split ``split`` from a random generator seeded with the dataset name and the split
index, so split k is the same on every machine and in every process. These are not the same random draws
as torchreid's ``splits.json`` files (which are themselves random per user).
"""

from __future__ import annotations

import random
from collections.abc import Iterable


def held_out_identities(ids: Iterable[int], dataset: str, split: int) -> set[int]:
    """The seeded half (rounded up) of ``ids`` that is held out for query/gallery in split ``split``."""
    if split < 0:
        raise ValueError(f"{dataset}: split must be >= 0, got {split}")
    ordered = sorted(set(ids))
    rng = random.Random(f"{dataset}:split{split}")  # str seeds hash with SHA-512: stable across runs
    return set(rng.sample(ordered, len(ordered) - len(ordered) // 2))
