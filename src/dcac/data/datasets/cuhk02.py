"""CUHK02 (Li and Wang, CVPR 2013): 1,816 identities in 5 camera-view pairs P1-P5 (2 cameras each), PNG.

On-disk layout (the official release, as torchreid reads it)::

    cuhk02/                         (or CUHK02/)
        Dataset/                    (optional level)
            P1/ cam1/ PPP_N.png ...   cam2/ PPP_N.png ...
            P2/ ...   P3/ ...   P4/ ...   P5/ ...

In the classic multi-source protocol CUHK02 is a training set only, so every image of all five pairs is
put in ``train``; query and gallery are empty. Person ids restart in each pair, so an identity is the pair
plus the id from the file name (``PPP_...``); the camera is 0-based over the 10 cameras (pair index * 2 +
view).
"""

from __future__ import annotations

from pathlib import Path

from dcac.data.datasets.market_layout import images_in, require_dir
from dcac.data.errors import ImageNameError
from dcac.data.records import ImageRecord, ReIDDataset

NAME = "cuhk02"
ALIASES = ("c2",)
FOLDER_NAMES = ("cuhk02", "CUHK02", "CUHK-02")
PAIRS = ("P1", "P2", "P3", "P4", "P5")
VIEWS = ("cam1", "cam2")
_PAIR_ID_STRIDE = 100_000  # encodes (pair, id) as one int whose sort order is the (pair, id) order
LAYOUT = """cuhk02/
    Dataset/                 (optional)
        P1/cam1/PPP_N.png  P1/cam2/PPP_N.png
        ...  (P1, P2, P3, P4, P5)"""


def _pairs_dir(path: Path) -> Path:
    return path / "Dataset" if (path / "Dataset").is_dir() else path


def is_dataset_dir(path: Path) -> bool:
    return (_pairs_dir(path) / PAIRS[0]).is_dir()


def _person_id(path: Path) -> int:
    head = path.name.split("_")[0]
    if not head.isdigit() or int(head) >= _PAIR_ID_STRIDE:
        raise ImageNameError(f"cannot parse image name {path}: expected 'PPP_N.png' (person id, image index)")
    return int(head)


def load(dataset_dir: Path) -> ReIDDataset:
    pairs_dir = _pairs_dir(dataset_dir)
    train = []
    for pair_index, pair in enumerate(PAIRS):
        for view_index, view in enumerate(VIEWS):
            view_dir = require_dir(pairs_dir / pair / view, NAME, LAYOUT)
            camid = pair_index * len(VIEWS) + view_index
            train += [
                ImageRecord(str(p), pair_index * _PAIR_ID_STRIDE + _person_id(p), camid, NAME)
                for p in images_in(view_dir)
            ]
    return ReIDDataset.from_splits(
        NAME,
        str(dataset_dir),
        train=train,
        query=[],
        gallery=[],
        train_only=True,
        notes=["training-only set: all five camera pairs are in train"],
    )
