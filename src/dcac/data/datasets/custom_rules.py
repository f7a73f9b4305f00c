"""What the three layouts of a user's own dataset share: splits, cameras, identities and bad-input handling.

The no-camera rule. A folder-per-identity tree without camera folders, or a CSV list with an empty camid
column, says nothing about cameras. The Re-ID protocol drops gallery images of the query's identity seen
by the query's camera; without cameras dcac drops nothing: every query is matched against the whole
gallery (as fast-reid's maintainers suggest for such data, by giving query and gallery different camera
ids). dcac implements it exactly that way: query images get camid 0, gallery images camid 1, training
images camid 0 (one camera, so training's camera-aware parts see a single camera). The rule is printed
with the dataset's statistics. A query image that is also in the gallery will then match itself: keep
the two splits disjoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from dcac.data.errors import DatasetLayoutError, EmptySplitError
from dcac.data.records import ImageRecord, ReIDDataset

SPLITS = ("train", "query", "gallery")
ON_ERROR_CHOICES = ("raise", "skip")
NO_CAMERA_RULE = (
    "no cameras given: every query is matched against the whole gallery (no same-camera "
    "exclusion; query camid 0, gallery camid 1, training camid 0)"
)


@dataclass
class RawRecord:
    """One image as the layout describes it, before identities and cameras become integers."""

    path: str
    identity: str
    camera: str | None
    split: str


@dataclass
class BadInput:
    """Collects skipped inputs when the user chose ``on_error="skip"``; raises at once otherwise."""

    on_error: str
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {self.on_error!r}")

    def report(self, error: Exception) -> None:
        if self.on_error == "raise":
            raise error
        self.skipped.append(str(error))

    def notes(self) -> list[str]:
        if not self.skipped:
            return []
        return [f"skipped {len(self.skipped)} bad entries (on_error=skip), first: {self.skipped[0]}"]


def _identity_labels(identities: Iterable[str]) -> dict[str, int]:
    """Integer ids kept as they are; any other names numbered 0..N-1 in sorted order (cameras alike)."""
    names = sorted(set(identities))
    if all(name.lstrip("-").isdigit() for name in names):
        return {name: int(name) for name in names}
    return {name: label for label, name in enumerate(names)}


def _camera_ids(raw: list[RawRecord], where: str) -> dict[str, int] | None:
    cameras = {r.camera for r in raw}
    if cameras == {None}:
        return None
    if None in cameras:
        example = next(r.path for r in raw if r.camera is None)
        raise DatasetLayoutError(
            f"{where}: some images have a camera and some do not (e.g. {example}); give "
            "a camera for every image or for none"
        )
    if all(camera.isdigit() for camera in cameras):
        return {camera: int(camera) for camera in cameras}
    return {camera: label for label, camera in enumerate(sorted(cameras))}


def build_custom_dataset(
    name: str, root: str, raw: list[RawRecord], *, layout: str, distractor_pids=(), notes: Iterable[str] = ()
) -> ReIDDataset:
    """A :class:`ReIDDataset` from raw records: integer ids, cameras (or the no-camera rule), split roles.

    No train split makes an evaluation-only dataset; no query and gallery a training-only one; query
    without gallery (or the reverse) is an error.
    """
    present = {r.split for r in raw}
    if not present:
        raise EmptySplitError(f"{root}: no images found (layout {layout})")
    if ("query" in present) != ("gallery" in present):
        missing = "gallery" if "query" in present else "query"
        raise EmptySplitError(
            f"{root}: has a {'query' if missing == 'gallery' else 'gallery'} split but no "
            f"{missing} split; evaluation needs both"
        )
    pid_of = _identity_labels(r.identity for r in raw)
    cam_of = _camera_ids(raw, root)
    all_notes = [f"layout: {layout}", *notes]
    if cam_of is None:
        all_notes.append(NO_CAMERA_RULE)
    splits: dict[str, list[ImageRecord]] = {split: [] for split in SPLITS}
    for r in raw:
        camid = cam_of[r.camera] if cam_of is not None else int(r.split == "gallery")
        splits[r.split].append(ImageRecord(r.path, pid_of[r.identity], camid, name))
    return ReIDDataset.from_splits(
        name,
        root,
        **splits,
        train_only="query" not in present,
        eval_only="train" not in present,
        notes=all_notes,
        distractor_pids=distractor_pids,
    )
