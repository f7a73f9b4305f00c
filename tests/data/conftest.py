"""Helpers that build tiny dataset trees in the real on-disk layouts."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from PIL import Image


def write_image(path: Path, colour: tuple[int, int, int] = (120, 60, 30), size: tuple[int, int] = (4, 8)) -> Path:
    """A small solid image (size is width x height); the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def write_images(folder: Path, names: Iterable[str]) -> None:
    for name in names:
        write_image(folder / name)


@pytest.fixture
def make_market_tree() -> Callable[..., Path]:
    """Market-style tree: train ids {2, 7, 4} (unsorted on purpose), query/gallery ids {1, 3}, junk, distractor."""

    def make(dataset_dir: Path, suffix: str = ".jpg", num_cameras: int = 6) -> Path:
        """``num_cameras`` < 6 folds camera numbers into 1..num_cameras (CUHK03 has 2)."""
        c3, c6 = (3 - 1) % num_cameras + 1, (6 - 1) % num_cameras + 1
        write_images(
            dataset_dir / "bounding_box_train",
            [
                f"0007_c1s1_000001_01{suffix}",
                f"0007_c2s1_000002_01{suffix}",
                f"0002_c{c3}s1_000003_01{suffix}",
                f"0004_c{c6}s1_000004_01{suffix}",
                f"-1_c1s1_000005_01{suffix}",
            ],
        )
        write_images(dataset_dir / "query", [f"0001_c1s1_000010_00{suffix}", f"0003_c2s1_000011_00{suffix}"])
        write_images(
            dataset_dir / "bounding_box_test",
            [
                f"0001_c2s1_000020_01{suffix}",
                f"0003_c1s1_000021_01{suffix}",
                f"0000_c{c3}s1_000022_01{suffix}",
                f"-1_c1s1_000023_01{suffix}",
            ],
        )
        return dataset_dir

    return make
