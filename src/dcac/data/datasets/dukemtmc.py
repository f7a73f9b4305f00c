"""DukeMTMC-reID (Zheng et al., ICCV 2017): 1,404 identities + 408 distractor ids, 8 cameras.

On-disk layout (the official ``DukeMTMC-reID`` archive unpacked)::

    DukeMTMC-reID/                  (or dukemtmc/, dukemtmcreid/, dukemtmc-reid/)
        bounding_box_train/   0001_c2_f0046182.jpg ...   702 ids, 16,522 images
        query/                0005_c2_f0046985.jpg ...   702 ids, 2,228 images
        bounding_box_test/    0002_c1_f0044158.jpg ...   17,661 images

Names are ``PPPP_cC_fFFFFFFF.jpg``: person id, camera (1-8), frame.
"""

from __future__ import annotations

from pathlib import Path

from dcac.data.datasets.market_layout import MARKET_LAYOUT, is_market_dir, load_market_style
from dcac.data.records import ReIDDataset

NAME = "dukemtmc"
ALIASES = ("d", "duke")
FOLDER_NAMES = ("DukeMTMC-reID", "dukemtmc", "dukemtmcreid", "dukemtmc-reid", "DukeMTMC")
NUM_CAMERAS = 8
LAYOUT = MARKET_LAYOUT
is_dataset_dir = is_market_dir


def load(dataset_dir: Path) -> ReIDDataset:
    return load_market_style(dataset_dir, name=NAME, num_cameras=NUM_CAMERAS)
