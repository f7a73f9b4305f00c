"""QMUL iLIDS (Zheng et al., BMVC 2009): 119 identities, 476 images, no camera labels.

On-disk layout (the ``i-LIDS_Pedestrian.tgz`` release)::

    ilids/                          (or iLIDS/, i-LIDS/)
        i-LIDS_Pedestrian/          (optional level)
            Persons/   0001001.jpg 0001002.jpg ...   'PPPPNNN.jpg': 4-digit person id, 3-digit image index

Split ``split`` (seeded, see ``small_splits``) holds out 60 of the 119 identities; for each, two of its
images are drawn (seeded): the first is the query (camid 0), the second the gallery image (camid 1), as in
the classic protocol. All images of the other 59 identities form ``train`` (camid 0: there are no
cameras).
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from dcac.data.datasets.market_layout import images_in, require_dir
from dcac.data.datasets.small_splits import held_out_identities
from dcac.data.errors import ImageNameError
from dcac.data.records import ImageRecord, ReIDDataset

NAME = "ilids"
ALIASES = ()
FOLDER_NAMES = ("ilids", "iLIDS", "i-LIDS", "QMUL-iLIDS")
LAYOUT = """ilids/
    i-LIDS_Pedestrian/       (optional)
        Persons/PPPPNNN.jpg   (4-digit person id, 3-digit image index)"""


def _persons_dir(path: Path) -> Path:
    return path / "i-LIDS_Pedestrian" / "Persons" if (path / "i-LIDS_Pedestrian").is_dir() else path / "Persons"


def is_dataset_dir(path: Path) -> bool:
    return _persons_dir(path).is_dir()


def _person_id(path: Path) -> int:
    if len(path.stem) != 7 or not path.stem.isdigit():
        raise ImageNameError(
            f"cannot parse image name {path}: expected 'PPPPNNN.jpg' (4-digit person id, 3-digit image index)"
        )
    return int(path.stem[:4])


def load(dataset_dir: Path, split: int = 0) -> ReIDDataset:
    images_by_pid: dict[int, list[Path]] = defaultdict(list)
    for path in images_in(require_dir(_persons_dir(dataset_dir), NAME, LAYOUT)):
        images_by_pid[_person_id(path)].append(path)
    held_out = held_out_identities(images_by_pid, NAME, split)
    rng = random.Random(f"{NAME}:split{split}:pairs")
    train, query, gallery = [], [], []
    for pid, paths in sorted(images_by_pid.items()):
        if pid not in held_out:
            train += [ImageRecord(str(p), pid, 0, NAME) for p in paths]
            continue
        if len(paths) < 2:
            raise ImageNameError(
                f"{NAME}: person {pid:04d} has {len(paths)} image(s) in {dataset_dir}; "
                "a held-out identity needs two (one query, one gallery)"
            )
        query_path, gallery_path = rng.sample(paths, 2)
        query.append(ImageRecord(str(query_path), pid, 0, NAME))
        gallery.append(ImageRecord(str(gallery_path), pid, 1, NAME))
    return ReIDDataset.from_splits(
        NAME,
        str(dataset_dir),
        train=train,
        query=query,
        gallery=gallery,
        notes=[f"seeded identity split {split}: {len(held_out)} held-out ids, one query and one gallery image each"],
    )
