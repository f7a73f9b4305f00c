"""PRID 2011, single-shot version (Hirzer et al., SCIA 2011): camera A 385 ids, camera B 749 ids.

On-disk layout (the official release)::

    prid2011/                       (or prid/, prid_2011/, PRID2011/)
        prid_2011/                  (optional level)
            single_shot/
                cam_a/   person_0001.png ... person_0385.png
                cam_b/   person_0001.png ... person_0749.png

Only persons 0001-0200 appear in both cameras (person_0201 of cam_a is not person_0201 of cam_b). Split
``split`` (seeded, see ``small_splits``) holds out 100 of those 200: query = their cam_a image (camid 0),
gallery = their cam_b image plus cam_b persons 0201-0749 as distractors (camid 1); the other 100 shared
persons (both images) form ``train``. cam_a persons 0201-0385 are not used, as in the classic protocol.
"""

from __future__ import annotations

import re
from pathlib import Path

from dcac.data.datasets.market_layout import images_in, require_dir
from dcac.data.datasets.small_splits import held_out_identities
from dcac.data.errors import ImageNameError
from dcac.data.records import ImageRecord, ReIDDataset

NAME = "prid"
ALIASES = ("prid2011",)
FOLDER_NAMES = ("prid2011", "prid", "prid_2011", "PRID2011", "PRID")
NUM_SHARED_IDS = 200  # persons 1..200 are the ones seen by both cameras
_NAME = re.compile(r"^person_(\d+)$")
LAYOUT = """prid2011/
    prid_2011/               (optional)
        single_shot/
            cam_a/person_NNNN.png
            cam_b/person_NNNN.png"""


def _single_shot_dir(path: Path) -> Path:
    return (path / "prid_2011" if (path / "prid_2011").is_dir() else path) / "single_shot"


def is_dataset_dir(path: Path) -> bool:
    return _single_shot_dir(path).is_dir()


def _scan(folder: Path, camid: int) -> dict[int, ImageRecord]:
    records = {}
    for path in images_in(folder):
        match = _NAME.match(path.stem)
        if match is None:
            raise ImageNameError(f"cannot parse image name {path}: expected 'person_NNNN.png'")
        records[int(match.group(1))] = ImageRecord(str(path), int(match.group(1)), camid, NAME)
    return records


def load(dataset_dir: Path, split: int = 0) -> ReIDDataset:
    single_shot = _single_shot_dir(dataset_dir)
    cam_a = _scan(require_dir(single_shot / "cam_a", NAME, LAYOUT), camid=0)
    cam_b = _scan(require_dir(single_shot / "cam_b", NAME, LAYOUT), camid=1)
    shared = [pid for pid in cam_a if pid <= NUM_SHARED_IDS and pid in cam_b]
    held_out = held_out_identities(shared, NAME, split)
    train = [cam[pid] for pid in sorted(shared) if pid not in held_out for cam in (cam_a, cam_b)]
    query = [cam_a[pid] for pid in sorted(held_out)]
    gallery = [cam_b[pid] for pid in sorted(cam_b) if pid in held_out or pid > NUM_SHARED_IDS]
    return ReIDDataset.from_splits(
        NAME,
        str(dataset_dir),
        train=train,
        query=query,
        gallery=gallery,
        notes=[
            f"seeded identity split {split}: {len(held_out)} held-out ids; "
            "cam_b persons above 200 are gallery distractors"
        ],
    )
