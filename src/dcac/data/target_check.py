"""Checking a target dataset before any work is spent on it: every image readable, at least one valid query.

Training evaluates its targets only after the last epoch; a target that cannot be evaluated must fail (or,
with ``data.on_corrupt=skip``, lose its unreadable images) before training starts, not after.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from dcac.data.image_io import verify_images
from dcac.data.records import ReIDDataset


def num_valid_queries(target: ReIDDataset) -> int:
    """Queries whose identity appears in the gallery under another camera (the evaluation's valid queries)."""
    cameras_of: dict[int, set[int]] = {}
    for record in target.gallery:
        cameras_of.setdefault(record.pid, set()).add(record.camid)
    return sum(1 for q in target.query if cameras_of.get(q.pid, set()) - {q.camid})


def checked_target(
    target: ReIDDataset, on_corrupt: Literal["raise", "skip"] = "raise", *, num_workers: int = 1
) -> tuple[ReIDDataset, int]:
    """Decode every query and gallery image; return the target without unreadable ones and how many were dropped.

    ``on_corrupt="raise"`` raises :class:`dcac.data.errors.CorruptImageError` naming the first unreadable
    file. Raises ``ValueError`` naming the dataset when no query is left with a valid gallery match.
    """
    query, skipped_query = verify_images(target.query, on_corrupt, num_workers=num_workers)
    gallery, skipped_gallery = verify_images(target.gallery, on_corrupt, num_workers=num_workers)
    skipped = skipped_query + skipped_gallery
    if skipped:
        target = dataclasses.replace(target, query=query, gallery=gallery)
    if num_valid_queries(target) == 0:
        raise ValueError(
            f"target {target.name!r} at {target.root}: none of its {len(target.query)} readable queries has a "
            "gallery image of the same identity from another camera, so it cannot be evaluated"
        )
    return target, skipped
