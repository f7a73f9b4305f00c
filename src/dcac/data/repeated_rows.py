"""Files a dataset list names more than once, checked by every loader (``ReIDDataset.from_splits``).

A row repeating an earlier one (same file, split, identity and camera) is dropped and counted: kept, it
would be scored twice (an extra query) or drawn twice as often in training. A file given two identities,
or two cameras within a split, is refused: the list contradicts itself and no choice would be right. One
file as both a query and a gallery image of the same identity is left alone (``dcac data check`` reports it).
The same file spelled two ways (``a.jpg``, ``./a.jpg``) counts as one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from dcac.data.errors import DuplicateListingError

if TYPE_CHECKING:  # records.py imports this module
    from dcac.data.records import ImageRecord

EVAL_SPLITS = ("query", "gallery")


def _contradiction(
    where: str, first: tuple[str, ImageRecord], second: tuple[str, ImageRecord]
) -> DuplicateListingError:
    (split_a, a), (split_b, b) = first, second
    return DuplicateListingError(
        f"{where}: {b.path} is listed as pid {a.pid}, camera {a.camid}, in {split_a} and as pid {b.pid}, "
        f"camera {b.camid}, in {split_b}; a file shows one person seen by one camera: fix the list"
    )


def drop_repeated_rows(
    splits: Mapping[str, Sequence[ImageRecord]], where: str
) -> tuple[dict[str, list[ImageRecord]], int, list[str]]:
    """The records of each split without repeated rows, how many were dropped, and a note saying so.

    ``splits`` maps a split name to its records (before train ids are relabelled); ``where`` names the
    dataset in the error a contradiction raises.
    """
    kept: dict[str, list[ImageRecord]] = {split: [] for split in splits}
    evaluation: dict[str, tuple[str, ImageRecord]] = {}  # query and gallery share their identity numbers
    repeated: list[str] = []
    for split, records in splits.items():
        seen: dict[str, ImageRecord] = {}
        for record in records:
            key = os.path.normpath(os.path.abspath(record.path))
            earlier = seen.get(key)
            if earlier is not None:
                if (earlier.pid, earlier.camid) != (record.pid, record.camid):
                    raise _contradiction(where, (split, earlier), (split, record))
                repeated.append(record.path)
                continue
            seen[key] = record
            if split in EVAL_SPLITS:
                other = evaluation.setdefault(key, (split, record))
                if other[1].pid != record.pid:
                    raise _contradiction(where, other, (split, record))
            kept[split].append(record)
    if not repeated:
        return kept, 0, []
    return (
        kept,
        len(repeated),
        [f"dropped {len(repeated)} repeated list rows (same file, split, id, camera), first: {repeated[0]}"],
    )
