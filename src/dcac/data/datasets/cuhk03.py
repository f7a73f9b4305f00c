"""CUHK03 in the CUHK03-NP ("new protocol", Zhong et al., CVPR 2017) split: 767 train / 700 test ids.

On-disk layout (the CUHK03-NP release)::

    cuhk03np/                       (or cuhk03-np/, CUHK03-NP/, cuhk03/)
        detected/
            bounding_box_train/   0001_c1_1.png ...   767 ids, 7,365 images
            query/                                    700 ids, 1,400 images
            bounding_box_test/                        700 ids, 5,332 images
        labeled/
            (same three folders; 7,368 / 1,400 / 5,328 images)

Names are ``PPPP_cC_N.png`` with camera C in {1, 2}. ``variant="detected"`` (default, as torchreid and
DCAC) reads the detector boxes, ``variant="labeled"`` (fast-reid's default) the hand-drawn ones; only the
chosen variant's folder needs to exist.
"""

from __future__ import annotations

from pathlib import Path

from dcac.data.datasets.market_layout import MARKET_LAYOUT, load_market_style, require_dir
from dcac.data.records import ReIDDataset

NAME = "cuhk03"
ALIASES = ("c3",)
FOLDER_NAMES = ("cuhk03np", "cuhk03-np", "CUHK03-NP", "cuhk03_np", "cuhk03")
NUM_CAMERAS = 2
VARIANTS = ("detected", "labeled")
LAYOUT = "cuhk03np/\n    detected/   or   labeled/\n" + "\n".join(
    "        " + line for line in MARKET_LAYOUT.replace(".jpg", ".png").splitlines()[1:]
)


def is_dataset_dir(path: Path) -> bool:
    return any((path / variant).is_dir() for variant in VARIANTS)


def load(dataset_dir: Path, variant: str = "detected") -> ReIDDataset:
    if variant not in VARIANTS:
        raise ValueError(f"cuhk03: variant must be one of {VARIANTS}, got {variant!r}")
    variant_dir = require_dir(dataset_dir / variant, NAME, LAYOUT)
    return load_market_style(variant_dir, name=NAME, layout=LAYOUT, num_cameras=NUM_CAMERAS)
