"""GRID / QMUL underground Re-ID (Loy et al., CVPR 2009): 250 paired identities, 775 distractors, 8 cameras.

On-disk layout (the ``underground_reid.zip`` release)::

    grid/                           (or GRID/, Grid/)
        underground_reid/           (optional level)
            probe/     0001_1_25004_107_32_106_221.jpeg ...   250 images, one per paired identity
            gallery/   0001_5_25009_... .jpeg  0000_... .jpeg  1,025 images (0000 = distractor)

Names are ``PPPP_C_*.jpeg``: person id (0000 distractor) and camera 1-8. Split ``split`` (seeded, see
``small_splits``) holds out 125 of the 250 identities: query = their probe images, gallery = their gallery
images plus all 775 distractors; the other 125 identities (probe + gallery images) form ``train``. The
classic protocol's ``features_and_partitions.mat`` partitions are not read.
"""

from __future__ import annotations

from pathlib import Path

from dcac.data.datasets.market_layout import list_images, require_dir
from dcac.data.datasets.small_splits import held_out_identities
from dcac.data.errors import ImageNameError
from dcac.data.records import ImageRecord, ReIDDataset

NAME = "grid"
ALIASES = ()
FOLDER_NAMES = ("grid", "GRID", "Grid", "underground_reid")
DISTRACTOR_PID = 0
LAYOUT = """grid/
    underground_reid/        (optional)
        probe/PPPP_C_*.jpeg
        gallery/PPPP_C_*.jpeg   (PPPP = 0000 for distractors)"""


def _images_dir(path: Path) -> Path:
    return path / "underground_reid" if (path / "underground_reid").is_dir() else path


def is_dataset_dir(path: Path) -> bool:
    return (_images_dir(path) / "probe").is_dir()


def _parse(path: Path) -> tuple[int, int]:
    fields = path.name.split("_")
    if len(fields) < 3 or not fields[0].isdigit() or not fields[1].isdigit() or int(fields[1]) < 1:
        raise ImageNameError(f"cannot parse image name {path}: expected 'PPPP_C_*.jpeg' "
                             "(person id, camera number from 1)")
    return int(fields[0]), int(fields[1]) - 1


def _scan(folder: Path) -> list[ImageRecord]:
    return [ImageRecord(str(p), *_parse(p), NAME) for p in list_images(folder)]


def load(dataset_dir: Path, split: int = 0) -> ReIDDataset:
    images_dir = _images_dir(dataset_dir)
    probe = _scan(require_dir(images_dir / "probe", NAME, LAYOUT))
    gallery = _scan(require_dir(images_dir / "gallery", NAME, LAYOUT))
    held_out = held_out_identities((r.pid for r in probe if r.pid != DISTRACTOR_PID), NAME, split)
    test_pids = held_out | {DISTRACTOR_PID}
    return ReIDDataset.from_splits(
        NAME, str(dataset_dir),
        train=[r for r in probe + gallery if r.pid not in test_pids],
        query=[r for r in probe if r.pid in held_out],
        gallery=[r for r in gallery if r.pid in test_pids],
        notes=[f"seeded identity split {split}: {len(held_out)} held-out ids"])
