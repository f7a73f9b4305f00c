"""Reading the Market-1501 folder layout, which several datasets and re-packagings share.

::

    <dataset folder>/
        bounding_box_train/   PPPP_cC....jpg    training images
        query/                PPPP_cC....jpg    query images
        bounding_box_test/    PPPP_cC....jpg    gallery images

``PPPP`` is the person id (``-1`` junk, ``0000`` distractor) and ``C`` the 1-based camera number; the
rest of the name is ignored. Used by Market-1501, DukeMTMC-reID, CUHK03-NP, the Market-style
re-packaging of MSMT17 and the synthetic domains. Also holds the small helpers every loader uses to
report a missing folder or an unparsable name.
"""

from __future__ import annotations

import re
from pathlib import Path

from dcac.data.errors import DatasetLayoutError, ImageNameError
from dcac.data.image_io import is_image_file
from dcac.data.records import ImageRecord, ReIDDataset

SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
_MARKET_NAME = re.compile(r"^(-?\d+)_c(\d+)")

MARKET_LAYOUT = """<dataset folder>/
    bounding_box_train/   PPPP_cC*.jpg   (PPPP person id, -1 junk, 0000 distractor; C camera, from 1)
    query/                PPPP_cC*.jpg
    bounding_box_test/    PPPP_cC*.jpg"""


def require_dir(path: Path, dataset: str, layout: str) -> Path:
    """Return ``path`` if it is a folder, else raise naming it and the expected layout."""
    if not path.is_dir():
        raise DatasetLayoutError(f"{dataset}: folder not found: {path}\nexpected layout:\n{layout}")
    return path


def require_file(path: Path, dataset: str, layout: str) -> Path:
    """Return ``path`` if it is a file, else raise naming it and the expected layout."""
    if not path.is_file():
        raise DatasetLayoutError(f"{dataset}: file not found: {path}\nexpected layout:\n{layout}")
    return path


def images_in(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (so loading order never depends on the OS)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def check_camera(camera: int, num_cameras: int | None, dataset: str, where: object) -> None:
    """Raise naming ``where`` if the 1-based ``camera`` is outside ``1..num_cameras`` (None: no upper bound).

    A camera out of range almost always means another dataset's folder was given (Duke has 8 cameras,
    Market 6), which would otherwise load silently under the wrong name.
    """
    if camera < 1 or (num_cameras is not None and camera > num_cameras):
        bound = f"1..{num_cameras}" if num_cameras is not None else ">= 1"
        raise ImageNameError(
            f"{where}: camera {camera} is outside {dataset}'s cameras {bound}; is this folder really {dataset}?"
        )


def match_market_name(path: str | Path) -> tuple[int, int] | None:
    """``(pid, camera number as written)`` from a Market-style file name, or None when it does not follow it."""
    match = _MARKET_NAME.match(Path(path).name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def parse_market_name(path: Path, *, num_cameras: int | None = None, dataset: str = "dataset") -> tuple[int, int]:
    """``(pid, 0-based camid)`` of a dataset image; raise naming the file if its name does not parse."""
    parsed = match_market_name(path)
    if parsed is None:
        raise ImageNameError(
            f"cannot parse image name {path}: expected 'PPPP_cC...' "
            "(person id, '_c', camera number from 1), e.g. 0002_c1s1_000451_03.jpg"
        )
    check_camera(parsed[1], num_cameras, dataset, f"image {path}")
    return parsed[0], parsed[1] - 1


def scan_market_folder(folder: Path, dataset: str, num_cameras: int | None = None) -> list[ImageRecord]:
    """Records for every image in a Market-style split folder (cameras checked against ``num_cameras``)."""
    records = []
    for path in images_in(folder):
        pid, camid = parse_market_name(path, num_cameras=num_cameras, dataset=dataset)
        records.append(ImageRecord(str(path), pid, camid, dataset))
    return records


def is_market_dir(path: Path) -> bool:
    """Whether ``path`` itself holds a Market-style split folder."""
    return any((path / folder).is_dir() for folder in SPLIT_FOLDERS.values())


def load_market_style(
    dataset_dir: Path,
    *,
    name: str,
    layout: str = MARKET_LAYOUT,
    num_cameras: int | None = None,
    distractor_pids: tuple[int, ...] = (),
) -> ReIDDataset:
    """Load a dataset stored in the Market-1501 layout (cameras checked against ``num_cameras``)."""
    splits = {
        split: scan_market_folder(require_dir(dataset_dir / folder, name, layout), name, num_cameras)
        for split, folder in SPLIT_FOLDERS.items()
    }
    return ReIDDataset.from_splits(name, str(dataset_dir), **splits, distractor_pids=distractor_pids)
