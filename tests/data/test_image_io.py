"""Corrupt images: verify_images raise/skip, and ReIDImageDataset naming the file at read time."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import write_image
from PIL import Image

from dcac.data import CorruptImageError, ImageRecord, ReIDImageDataset, read_rgb, verify_images
from dcac.data.transforms import build_diffusion_transform, build_test_transform


@pytest.fixture
def records(tmp_path: Path) -> list[ImageRecord]:
    good = [write_image(tmp_path / f"good{k}.jpg", (10 * k, 100, 200), size=(16, 32)) for k in range(3)]
    truncated = tmp_path / "truncated.jpg"
    full = write_image(tmp_path / "full.jpg", size=(64, 128)).read_bytes()
    truncated.write_bytes(full[: len(full) // 2])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image")
    paths = [good[0], truncated, good[1], garbage, good[2]]
    return [ImageRecord(str(p), pid, 0, "toy") for pid, p in enumerate(paths)]


def test_verify_raise_names_the_first_bad_file(records: list[ImageRecord]) -> None:
    with pytest.raises(CorruptImageError, match="truncated.jpg"):
        verify_images(records)


@pytest.mark.parametrize("num_workers", [1, 2])
def test_verify_skip_counts_and_keeps_order(records: list[ImageRecord], num_workers: int) -> None:
    kept, skipped = verify_images(records, on_corrupt="skip", num_workers=num_workers)
    assert skipped == 2
    assert [r.pid for r in kept] == [0, 2, 4]


def test_verify_rejects_unknown_policy(records: list[ImageRecord]) -> None:
    with pytest.raises(ValueError, match="on_corrupt"):
        verify_images(records, on_corrupt="ignore")  # type: ignore[arg-type]


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CorruptImageError, match="absent.jpg"):
        read_rgb(str(tmp_path / "absent.jpg"))


def test_dataset_item_and_error_naming_path(records: list[ImageRecord]) -> None:
    dataset = ReIDImageDataset(records, build_test_transform(32, 16), diffusion_transform=build_diffusion_transform(24))
    assert len(dataset) == 5
    item = dataset[2]
    assert set(item) == {"image", "pid", "camid", "index", "diffusion_image"}
    assert item["image"].shape == (3, 32, 16) and item["diffusion_image"].shape == (3, 24, 24)
    assert (item["pid"], item["camid"], item["index"]) == (2, 0, 2)
    # records[2] is good1.jpg, solid colour (10, 100, 200): both branches see the same pixels,
    # each with its own normalisation
    expected = torch.tensor([10, 100, 200]) / 255.0
    assert torch.allclose(item["image"][:, 5, 5], (expected - 0.5) / 0.5, atol=0.02)
    assert torch.allclose(item["diffusion_image"][:, 5, 5], expected * 2 - 1, atol=0.02)
    with pytest.raises(CorruptImageError, match="truncated.jpg"):
        dataset[1]
    with pytest.raises(CorruptImageError, match="garbage.png"):
        dataset[3]
    assert "diffusion_image" not in ReIDImageDataset(records, build_test_transform(32, 16))[0]


def test_one_decode_feeds_both_transforms(records: list[ImageRecord], monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_open = Image.open

    def counting_open(path, *args, **kwargs):  # wraps Pillow, not dcac code
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    dataset = ReIDImageDataset(records, build_test_transform(32, 16), diffusion_transform=build_diffusion_transform())
    dataset[0]
    assert opened == [records[0].path]
