"""CUHK-SYSU person crops (Xiao et al., CVPR 2017): 11,934 identities, 34,574 crops, no camera labels.

Two accepted on-disk layouts of the re-identification crops::

    cuhksysu/                       (or CUHK-SYSU/, cuhk-sysu/, cuhk_sysu/)
        cropped_images/   p11422_s16929_1.jpg ...            torchreid's layout ('p<pid>_s<scene>_<n>')
    cuhksysu4reid/                  (or cuhksysu/cuhksysu4reid/)
        combine/          11422_s16929_0000123_0.jpg ...     the 'cuhksysu4reid' re-packaging ('<pid>_s<scene>_...')

In the classic multi-source protocol CUHK-SYSU is a training set only: every crop goes to ``train``
(``combine/`` holds all crops of the re-packaging), query and gallery are empty. There are no cameras, so
every camid is 0.
"""

from __future__ import annotations

import re
from pathlib import Path

from dcac.data.datasets.market_layout import images_in
from dcac.data.errors import DatasetLayoutError, ImageNameError
from dcac.data.records import ImageRecord, ReIDDataset

NAME = "cuhksysu"
ALIASES = ("cs",)
FOLDER_NAMES = ("cuhksysu", "CUHK-SYSU", "cuhk-sysu", "cuhk_sysu", "cuhksysu4reid")
IMAGE_FOLDERS = ("cropped_images", "combine", "cuhksysu4reid/combine")
_NAME = re.compile(r"^p?(\d+)_s\d+")
LAYOUT = """cuhksysu/
    cropped_images/p<pid>_s<scene>_<n>.jpg
or
cuhksysu4reid/
    combine/<pid>_s<scene>_<index>_<hard>.jpg"""


def is_dataset_dir(path: Path) -> bool:
    return any((path / folder).is_dir() for folder in IMAGE_FOLDERS)


def _person_id(path: Path) -> int:
    match = _NAME.match(path.name)
    if match is None:
        raise ImageNameError(f"cannot parse image name {path}: expected 'p<pid>_s<scene>_...' or '<pid>_s<scene>_...'")
    return int(match.group(1))


def load(dataset_dir: Path) -> ReIDDataset:
    image_dir = next((dataset_dir / f for f in IMAGE_FOLDERS if (dataset_dir / f).is_dir()), None)
    if image_dir is None:
        raise DatasetLayoutError(
            f"{NAME}: none of {', '.join(IMAGE_FOLDERS)} found in {dataset_dir}\nexpected layout:\n{LAYOUT}"
        )
    train = [ImageRecord(str(p), _person_id(p), 0, NAME) for p in images_in(image_dir)]
    return ReIDDataset.from_splits(
        NAME,
        str(dataset_dir),
        train=train,
        query=[],
        gallery=[],
        train_only=True,
        notes=["training-only set: every crop is in train; no camera labels"],
    )
