"""A user's dataset stored as one folder per identity, with optional camera folders.

::

    <dataset folder>/
        train/<identity>/<image>              (optional: no train folder = evaluation-only dataset)
        query/<identity>/<image>
        gallery/<identity>/<image>
    or, with cameras:
        train/<identity>/<camera>/<image>     (e.g. query/0042/cam3/a.jpg)

Identity folder names are integers (kept, ``-1`` = junk) or any names (numbered in sorted order over all
splits, so the same name in query and gallery is the same person). Camera folder names are any names,
numbered in sorted order. Without camera folders the no-camera rule of ``custom_rules`` applies.
"""

from __future__ import annotations

from pathlib import Path

from dcac.data.datasets.custom_rules import SPLITS, BadInput, RawRecord
from dcac.data.datasets.market_layout import images_in
from dcac.data.errors import DatasetLayoutError, EmptySplitError

LAYOUT = """<dataset folder>/
    train/<identity>/<image>     (optional; or train/<identity>/<camera>/<image>)
    query/<identity>/<image>
    gallery/<identity>/<image>"""


def is_identity_folders_dir(path: Path) -> bool:
    return any((path / split).is_dir() for split in SPLITS)


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_identity(identity_dir: Path, split: str, bad: BadInput) -> list[RawRecord]:
    images, cameras = images_in(identity_dir), _subfolders(identity_dir)
    if images and cameras:
        bad.report(
            DatasetLayoutError(
                f"{identity_dir}: holds both images and sub-folders; put images directly "
                "in the identity folder (no cameras) or in camera folders, not both"
            )
        )
        cameras = []
    records = [RawRecord(str(p), identity_dir.name, None, split) for p in images]
    for camera_dir in cameras:
        records += [RawRecord(str(p), identity_dir.name, camera_dir.name, split) for p in images_in(camera_dir)]
    return records


def scan_identity_folders(dataset_dir: Path, bad: BadInput) -> list[RawRecord]:
    """Raw records of every split folder present; an empty split folder is an error naming it."""
    records: list[RawRecord] = []
    for split in SPLITS:
        split_dir = dataset_dir / split
        if not split_dir.is_dir():
            continue
        stray = images_in(split_dir)
        if stray:
            raise DatasetLayoutError(
                f"{split_dir}: images directly in the split folder (e.g. {stray[0].name}); "
                f"expected one folder per identity:\n{LAYOUT}"
            )
        split_records = [r for identity_dir in _subfolders(split_dir) for r in _scan_identity(identity_dir, split, bad)]
        if not split_records:
            raise EmptySplitError(f"{split_dir}: the {split} split has no images; expected layout:\n{LAYOUT}")
        records += split_records
    return records
