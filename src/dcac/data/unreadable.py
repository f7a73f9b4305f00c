"""``data.on_corrupt=skip`` for the training set: unreadable images dropped, and with them any identity left
without a readable image, the others renumbered so the labels stay 0..N-1 (the classifier and the memory
have one row per label, and a label without images would leave a row that nothing can fill)."""

from __future__ import annotations

from collections.abc import Sequence

from dcac.data.errors import CorruptImageError
from dcac.data.image_io import verify_images
from dcac.data.records import ImageRecord, relabel_pids


def drop_unreadable_training_images(
    records: Sequence[ImageRecord], *, num_workers: int = 1
) -> tuple[list[ImageRecord], int, str]:
    """The readable records (labels renumbered 0..N-1 in the order of the old labels), N, and what was
    dropped in one line ("" when nothing was)."""
    kept, skipped = verify_images(records, "skip", num_workers=num_workers)
    if not kept:
        raise CorruptImageError(f"none of the {len(records)} training images can be read (e.g. {records[0].path})")
    num_before, relabelled = len({r.pid for r in records}), relabel_pids(kept)
    num_ids = len({r.pid for r in relabelled})
    if not skipped:
        return list(kept), num_ids, ""
    note = f"skipped {skipped} unreadable training images"
    lost = num_before - num_ids
    if lost:
        identities = "identity" if lost == 1 else "identities"
        note += (
            f"; dropped {lost} {identities} with no readable image (the other {num_ids} renumbered 0..{num_ids - 1})"
        )
    return relabelled, num_ids, note
