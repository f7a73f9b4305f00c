"""Market-1501 (Zheng et al., ICCV 2015): 1,501 identities, 6 cameras.

On-disk layout (the official archive ``Market-1501-v15.09.15`` unpacked)::

    Market-1501-v15.09.15/          (or market1501/, Market-1501/, Market1501/, market/)
        bounding_box_train/   0002_c1s1_000451_03.jpg ...   751 ids, 12,936 images
        query/                0001_c1s1_001051_00.jpg ...   750 ids, 3,368 images
        bounding_box_test/    0000_c1s1_000151_01.jpg ...   19,732 images incl. distractors (0000) and junk (-1)

Names are ``PPPP_cCsS_FFFFFF_NN.jpg``: person id, camera (1-6), sequence, frame, box. Junk (-1) is dropped,
distractors (0000) stay in the gallery.
"""

from __future__ import annotations

from pathlib import Path

from dcac.data.datasets.market_layout import MARKET_LAYOUT, is_market_dir, load_market_style
from dcac.data.records import ReIDDataset

NAME = "market1501"
ALIASES = ("ma", "market")
FOLDER_NAMES = ("Market-1501-v15.09.15", "market1501", "Market-1501", "Market1501", "market")
NUM_CAMERAS = 6
LAYOUT = MARKET_LAYOUT
is_dataset_dir = is_market_dir


def load(dataset_dir: Path) -> ReIDDataset:
    return load_market_style(dataset_dir, name=NAME, num_cameras=NUM_CAMERAS, distractor_pids=(0,))
