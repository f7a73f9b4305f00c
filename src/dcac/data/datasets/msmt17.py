"""MSMT17 (Wei et al., CVPR 2018): 4,101 identities, 15 cameras; three accepted on-disk layouts.

1. The original release, ``MSMT17_V1``::

       MSMT17_V1/                   (or MSMT17/, msmt17/)
           train/0000/0000_000_01_0303morning_0015_0.jpg ...
           test/0000/0000_000_01_0303morning_0008_0.jpg ...
           list_train.txt   list_val.txt   list_query.txt   list_gallery.txt

   Each list line is ``<path relative to train/ or test/> <person label>``; the camera is the third
   ``_``-separated field of the file name (01-15).
2. ``MSMT17_V2``: the same with the image folders named ``mask_train_v2/`` and ``mask_test_v2/``.
3. The Market-style re-packaging (``bounding_box_train/``, ``query/``, ``bounding_box_test/`` with
   ``PPPP_cCC_*.jpg`` names), read as-is.

Training split convention: ``use_val=True`` (default) trains on ``list_train`` + ``list_val`` (32,621
images, 1,041 ids), as CLIP-ReID and DCAC do; ``use_val=False`` uses ``list_train`` only (30,248 images,
torchreid's default). The val images belong to the train identities, so the id count is the same. The
re-packaged layout has no val list; it accepts only ``use_val=True`` and takes ``bounding_box_train`` as
it is.
"""

from __future__ import annotations

from pathlib import Path

from dcac.data.datasets.market_layout import (
    MARKET_LAYOUT,
    SPLIT_FOLDERS,
    is_market_dir,
    load_market_style,
    require_dir,
    require_file,
)
from dcac.data.errors import DatasetLayoutError, EmptySplitError, ImageNameError
from dcac.data.records import ImageRecord, ReIDDataset

NAME = "msmt17"
ALIASES = ("ms",)
FOLDER_NAMES = ("MSMT17_V1", "MSMT17_V2", "MSMT17", "msmt17")
NUM_CAMERAS = 15
IMAGE_FOLDER_PAIRS = (("train", "test"), ("mask_train_v2", "mask_test_v2"), ("mask_train_V2", "mask_test_V2"))
LAYOUT = (
    """MSMT17_V1/  (or MSMT17_V2/ with mask_train_v2/ mask_test_v2/ instead of train/ test/)
    train/PPPP/PPPP_NNN_CC_*.jpg
    test/PPPP/PPPP_NNN_CC_*.jpg
    list_train.txt  list_val.txt  list_query.txt  list_gallery.txt   (lines: '<relative path> <label>')
or the Market-style re-packaging:
"""
    + MARKET_LAYOUT
)


def is_dataset_dir(path: Path) -> bool:
    return (
        (path / "list_train.txt").is_file()
        or is_market_dir(path)
        or any((path / train).is_dir() for train, _ in IMAGE_FOLDER_PAIRS)
    )


def parse_msmt_camera(name: str, source: str) -> int:
    """0-based camera from an MSMT17 file name ``PPPP_NNN_CC_...``; ``source`` names where it came from."""
    fields = Path(name).name.split("_")
    if len(fields) < 3 or not fields[2].isdigit() or not 1 <= int(fields[2]) <= NUM_CAMERAS:
        raise ImageNameError(
            f"cannot parse MSMT17 image name {name!r} ({source}): expected "
            f"'PPPP_NNN_CC_...' with camera CC in 01..{NUM_CAMERAS}"
        )
    return int(fields[2]) - 1


def read_list(list_path: Path, image_dir: Path, dataset: str) -> list[ImageRecord]:
    """Records from an MSMT17 list file; every listed image must exist under ``image_dir``.

    Checking each entry at load time (one ``stat`` per line, a fraction of a second for MSMT17) turns a
    list that does not belong to the image folder into an error naming the line, not a crash mid-training.
    An empty list is an error too: it would silently drop a whole split.
    """
    records = []
    for line_number, line in enumerate(list_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        where = f"{list_path}, line {line_number}"
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise ImageNameError(f"cannot parse {where}: expected '<relative image path> <person label>', got {line!r}")
        camid = parse_msmt_camera(fields[0], where)
        image_path = image_dir / fields[0]
        if not image_path.is_file():
            raise DatasetLayoutError(
                f"{where} lists {image_path}, which does not exist: the list files and the "
                f"image folder {image_dir} do not belong together"
            )
        records.append(ImageRecord(str(image_path), int(fields[1]), camid, dataset))
    if not records:
        raise EmptySplitError(f"{list_path} lists no images; expected lines '<relative image path> <label>'")
    return records


def _load_lists(dataset_dir: Path, train_dir: Path, test_dir: Path, *, name: str, use_val: bool) -> ReIDDataset:
    lists = {
        split: require_file(dataset_dir / f"list_{split}.txt", name, LAYOUT)
        for split in ("train", "val", "query", "gallery")
    }
    train = read_list(lists["train"], train_dir, name)
    if use_val:
        train += read_list(lists["val"], train_dir, name)
    split_note = "train = list_train + list_val" if use_val else "train = list_train only"
    return ReIDDataset.from_splits(
        name,
        str(dataset_dir),
        train=train,
        query=read_list(lists["query"], test_dir, name),
        gallery=read_list(lists["gallery"], test_dir, name),
        notes=[split_note],
    )


def load_msmt_style(dataset_dir: Path, *, name: str, use_val: bool = True) -> ReIDDataset:
    """Load a dataset in any of the three MSMT17 layouts (used for MSMT17 and the synthetic MSMT domain)."""
    for train_folder, test_folder in IMAGE_FOLDER_PAIRS:
        if (dataset_dir / train_folder).is_dir():
            test_dir = require_dir(dataset_dir / test_folder, name, LAYOUT)
            return _load_lists(dataset_dir, dataset_dir / train_folder, test_dir, name=name, use_val=use_val)
    if (dataset_dir / SPLIT_FOLDERS["train"]).is_dir():
        if not use_val:
            raise ValueError(
                f"{name} at {dataset_dir} is in the Market-style re-packaging, which has no "
                "list_val.txt: use_val=False cannot be honoured; use the original layout"
            )
        return load_market_style(dataset_dir, name=name, layout=LAYOUT, num_cameras=NUM_CAMERAS)
    raise DatasetLayoutError(
        f"{name}: no image folder found in {dataset_dir} (looked for train/, "
        f"mask_train_v2/, bounding_box_train/)\nexpected layout:\n{LAYOUT}"
    )


def load(dataset_dir: Path, use_val: bool = True) -> ReIDDataset:
    return load_msmt_style(dataset_dir, name=NAME, use_val=use_val)
