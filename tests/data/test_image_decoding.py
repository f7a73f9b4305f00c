"""The one image decoder every reader goes through: EXIF orientation applied, every Pillow mode made 8-bit RGB
(16-bit scaled) or refused by name, empty images refused, and a decompression bomb an unreadable image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcac.cli import main
from dcac.data import CorruptImageError, ImageRecord, read_rgb, verify_images
from dcac.data.image_io import to_rgb


def _upright() -> Image.Image:
    """8 pixels high, 4 wide: red top half, blue bottom half (which way is up is visible)."""
    pixels = np.zeros((8, 4, 3), dtype=np.uint8)
    pixels[:4, :, 0] = 255
    pixels[4:, :, 2] = 255
    return Image.fromarray(pixels)


def write_sideways(path: Path) -> Path:
    """The upright picture stored turned a quarter anticlockwise, with EXIF orientation 6 ("turn it back")."""
    exif = Image.Exif()
    exif[0x0112] = 6
    _upright().transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)
    return path


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_exif_orientation_is_applied(tmp_path: Path, suffix: str) -> None:
    image = read_rgb(str(write_sideways(tmp_path / f"sideways{suffix}")))
    assert image.size == (4, 8)
    top, bottom = np.asarray(image)[1, 2], np.asarray(image)[6, 2]
    assert top[0] > 200 and top[2] < 50 and bottom[2] > 200 and bottom[0] < 50


def test_a_16_bit_grey_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    Image.fromarray(values).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    pixels = np.asarray(read_rgb(str(tmp_path / "grey16.png")))
    assert pixels.dtype == np.uint8 and pixels.shape == (8, 8, 3)
    expected = np.round(values / 257).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], expected)


@pytest.mark.parametrize("mode", sorted(set(Image.MODES) - {"F"}))
def test_every_pillow_mode_becomes_8_bit_rgb(mode: str) -> None:
    image = to_rgb(Image.new(mode, (3, 2)), "a blank image")
    assert image.mode == "RGB" and image.size == (3, 2)


def test_32_bit_integers_scale_as_16_bit_and_out_of_range_values_are_refused() -> None:
    assert to_rgb(Image.new("I", (2, 2), 65535), "x").getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(Image.new("I", (2, 2), 257 * 10), "x").getpixel((0, 0)) == (10, 10, 10)
    with pytest.raises(CorruptImageError, match="big.tif.*mode I.*0..65535"):
        to_rgb(Image.new("I", (2, 2), 70000), "big.tif")


def test_float_pixels_are_refused_by_name(tmp_path: Path) -> None:
    Image.new("F", (4, 4), 0.5).save(tmp_path / "float.tif")
    with pytest.raises(CorruptImageError, match="float.tif.*mode F"):
        read_rgb(str(tmp_path / "float.tif"))
    records = [ImageRecord(str(tmp_path / "float.tif"), 0, 0, "toy")]
    assert verify_images(records, "skip") == ([], 1)


@pytest.mark.parametrize("size", [(0, 5), (5, 0)])
def test_an_empty_image_is_refused(size: tuple[int, int]) -> None:
    with pytest.raises(CorruptImageError, match="in memory: empty image"):
        to_rgb(Image.new("RGB", size), "in memory")


def test_a_decompression_bomb_is_an_unreadable_image(tmp_path: Path, decompression_bomb) -> None:
    bomb = str(decompression_bomb(tmp_path / "bomb.png"))
    with pytest.raises(CorruptImageError, match="bomb.png.*400000000 pixels"):
        read_rgb(bomb)
    good = _upright()
    good.save(tmp_path / "good.png")
    records = [ImageRecord(bomb, 0, 0, "toy"), ImageRecord(str(tmp_path / "good.png"), 1, 0, "toy")]
    kept, skipped = verify_images(records, "skip")
    assert [r.pid for r in kept] == [1] and skipped == 1


def test_data_check_counts_a_bomb_as_an_unreadable_image(tmp_path: Path, capsys, decompression_bomb) -> None:
    root = tmp_path / "shop"
    for split, pid in (("train", 1), ("train", 2), ("query", 1), ("gallery", 1)):
        folder = root / split / f"p{pid}"
        folder.mkdir(parents=True, exist_ok=True)
        _upright().save(folder / "a.png")
    decompression_bomb(root / "train" / "p2" / "bomb.png")
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "unreadable images: 1 (first: " in out and "bomb.png" in out


def test_an_opened_image_that_does_not_decode_is_named(tmp_path: Path) -> None:
    path = tmp_path / "truncated.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (128, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with Image.open(path) as image:  # opening reads only the header
        with pytest.raises(CorruptImageError, match="cannot read image opened-by-the-user"):
            to_rgb(image, "opened-by-the-user")
