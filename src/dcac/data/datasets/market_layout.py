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
from dcac.data.records import ImageRecord, ReIDDataset

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
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


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (so loading order never depends on the OS)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def parse_market_name(path: Path) -> tuple[int, int]:
    """``(pid, 0-based camid)`` from a Market-style file name; raise naming the file if it does not parse."""
    match = _MARKET_NAME.match(path.name)
    if match is None or int(match.group(2)) < 1:
        raise ImageNameError(f"cannot parse image name {path}: expected 'PPPP_cC...' "
                             "(person id, '_c', camera number from 1), e.g. 0002_c1s1_000451_03.jpg")
    return int(match.group(1)), int(match.group(2)) - 1


def scan_market_folder(folder: Path, dataset: str) -> list[ImageRecord]:
    """Records for every image in a Market-style split folder."""
    records = []
    for path in list_images(folder):
        pid, camid = parse_market_name(path)
        records.append(ImageRecord(str(path), pid, camid, dataset))
    return records


def is_market_dir(path: Path) -> bool:
    """Whether ``path`` itself holds a Market-style split folder."""
    return any((path / folder).is_dir() for folder in SPLIT_FOLDERS.values())


def load_market_style(dataset_dir: Path, *, name: str, layout: str = MARKET_LAYOUT) -> ReIDDataset:
    """Load a dataset stored in the Market-1501 layout."""
    splits = {split: scan_market_folder(require_dir(dataset_dir / folder, name, layout), name)
              for split, folder in SPLIT_FOLDERS.items()}
    return ReIDDataset.from_splits(name, str(dataset_dir), **splits)
