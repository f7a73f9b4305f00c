"""GRID / QMUL underground Re-ID (Loy et al., CVPR 2009): 250 paired identities, 775 distractors, 8 cameras.

On-disk layout (the ``underground_reid.zip`` release)::

    grid/                           (or GRID/, Grid/)
        underground_reid/           (optional level)
            probe/     0001_1_25004_107_32_106_221.jpeg ...   250 images, one per paired identity
            gallery/   0001_5_25009_... .jpeg  0000_... .jpeg  1,025 images (0000 = distractor)
            features_and_partitions.mat   the 10 published partitions (ships in the zip)

Names are ``PPPP_C_*.jpeg``: person id (0000 distractor) and camera 1-8. Split ``split`` (0-9) takes the
125 training identities of partition ``split`` from ``features_and_partitions.mat`` (its ``trainIdxAll``
cell array, as torchreid reads it); the other 125 identities are held out: query = their probe images,
gallery = their gallery images plus all 775 distractors. Without the ``.mat`` file (a re-packaged copy)
the split is drawn from a seeded generator instead (``small_splits``), and the statistics note says so.
Reading the ``.mat`` file needs SciPy (``pip install scipy``), imported only then.
"""

from __future__ import annotations

from pathlib import Path

from dcac.data.datasets.market_layout import check_camera, images_in, require_dir
from dcac.data.datasets.small_splits import held_out_identities
from dcac.data.errors import DatasetLayoutError, ImageNameError
from dcac.data.records import ImageRecord, ReIDDataset

NAME = "grid"
ALIASES = ()
FOLDER_NAMES = ("grid", "GRID", "Grid", "underground_reid")
DISTRACTOR_PID = 0
NUM_CAMERAS = 8
PARTITIONS_FILE = "features_and_partitions.mat"
NUM_PARTITIONS = 10
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
        raise ImageNameError(
            f"cannot parse image name {path}: expected 'PPPP_C_*.jpeg' (person id, camera number from 1)"
        )
    check_camera(int(fields[1]), NUM_CAMERAS, NAME, f"image {path}")
    return int(fields[0]), int(fields[1]) - 1


def _scan(folder: Path) -> list[ImageRecord]:
    return [ImageRecord(str(p), *_parse(p), NAME) for p in images_in(folder)]


def read_partition(mat_path: Path, split: int) -> set[int]:
    """The training identities of published partition ``split`` (0-9) in ``features_and_partitions.mat``."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise ImportError(f"reading {mat_path} needs SciPy: pip install scipy") from None
    if not 0 <= split < NUM_PARTITIONS:
        raise ValueError(f"{NAME}: split must be in 0..{NUM_PARTITIONS - 1} (the published partitions), got {split}")
    try:
        partitions = loadmat(str(mat_path))["trainIdxAll"][0]
        train_ids = partitions[split][0][0][2][0]  # cell {split} -> struct -> its third field: train ids
    except (KeyError, IndexError, ValueError, OSError) as error:
        raise DatasetLayoutError(
            f"{mat_path}: cannot read partition {split} from 'trainIdxAll' "
            f"({error}); expected the file shipped in underground_reid.zip"
        ) from None
    return {int(i) for i in train_ids}


def _held_out(images_dir: Path, probe_ids: list[int], split: int) -> tuple[set[int], str]:
    mat_path = images_dir / PARTITIONS_FILE
    if mat_path.is_file():
        train_ids = read_partition(mat_path, split)
        return set(probe_ids) - train_ids, f"published partition {split} of {PARTITIONS_FILE}"
    held_out = held_out_identities(probe_ids, NAME, split)
    return held_out, f"seeded identity split {split} (no {PARTITIONS_FILE} found)"


def load(dataset_dir: Path, split: int = 0) -> ReIDDataset:
    images_dir = _images_dir(dataset_dir)
    probe = _scan(require_dir(images_dir / "probe", NAME, LAYOUT))
    gallery = _scan(require_dir(images_dir / "gallery", NAME, LAYOUT))
    held_out, how = _held_out(images_dir, [r.pid for r in probe if r.pid != DISTRACTOR_PID], split)
    test_pids = held_out | {DISTRACTOR_PID}
    return ReIDDataset.from_splits(
        NAME,
        str(dataset_dir),
        train=[r for r in probe + gallery if r.pid not in test_pids],
        query=[r for r in probe if r.pid in held_out],
        gallery=[r for r in gallery if r.pid in test_pids],
        notes=[f"{how}: {len(held_out)} held-out ids"],
        distractor_pids=(DISTRACTOR_PID,),
    )
