"""VIPeR (Gray et al., PETS 2007): 632 identities, one image in each of 2 cameras, BMP.

On-disk layout (the ``VIPeR.v1.0.zip`` release)::

    viper/                          (or VIPeR/)
        VIPeR/                      (optional level)
            cam_a/   000_45.bmp 001_45.bmp ...   'NNN_A.bmp': person number, viewing angle
            cam_b/   000_90.bmp 001_90.bmp ...

The person is the number before the first ``_``; every person must appear in both cameras. Split
``split`` (seeded, see ``small_splits``) holds out 316 identities: query = their cam_a image (camid 0),
gallery = their cam_b image (camid 1); the other 316 (both images) form ``train``. torchreid's extra
swapped (cam_b as query) splits are not produced.
"""

from __future__ import annotations

from pathlib import Path

from dcac.data.datasets.market_layout import images_in, require_dir
from dcac.data.datasets.small_splits import held_out_identities
from dcac.data.errors import DatasetLayoutError, ImageNameError
from dcac.data.records import ImageRecord, ReIDDataset

NAME = "viper"
ALIASES = ()
FOLDER_NAMES = ("viper", "VIPeR", "VIPER")
LAYOUT = """viper/
    VIPeR/                   (optional)
        cam_a/NNN_A.bmp
        cam_b/NNN_A.bmp"""


def _cams_dir(path: Path) -> Path:
    return path / "VIPeR" if (path / "VIPeR" / "cam_a").is_dir() else path


def is_dataset_dir(path: Path) -> bool:
    return (_cams_dir(path) / "cam_a").is_dir()


def _scan(folder: Path, camid: int) -> dict[int, ImageRecord]:
    records = {}
    for path in images_in(folder):
        head = path.stem.split("_")[0]
        if not head.isdigit():
            raise ImageNameError(f"cannot parse image name {path}: expected 'NNN_A.bmp' (person number, angle)")
        records[int(head)] = ImageRecord(str(path), int(head), camid, NAME)
    return records


def load(dataset_dir: Path, split: int = 0) -> ReIDDataset:
    cams_dir = _cams_dir(dataset_dir)
    cam_a = _scan(require_dir(cams_dir / "cam_a", NAME, LAYOUT), camid=0)
    cam_b = _scan(require_dir(cams_dir / "cam_b", NAME, LAYOUT), camid=1)
    if cam_a.keys() != cam_b.keys():
        unpaired = sorted(cam_a.keys() ^ cam_b.keys())
        raise DatasetLayoutError(
            f"{NAME}: persons {unpaired[:10]} appear in only one of {cams_dir}/cam_a and "
            f"{cams_dir}/cam_b; every VIPeR person has one image in each camera"
        )
    held_out = held_out_identities(cam_a, NAME, split)
    pids = sorted(cam_a)
    return ReIDDataset.from_splits(
        NAME,
        str(dataset_dir),
        train=[cam[pid] for pid in pids if pid not in held_out for cam in (cam_a, cam_b)],
        query=[cam_a[pid] for pid in pids if pid in held_out],
        gallery=[cam_b[pid] for pid in pids if pid in held_out],
        notes=[f"seeded identity split {split}: {len(held_out)} held-out ids, cam_a query / cam_b gallery"],
    )
