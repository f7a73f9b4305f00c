"""Images a hostile user hands to extract / search / compare: read as training reads them (EXIF, 16-bit),
empty and oversized ones refused in one line, a folder refused by compare, and non-UTF-8 file names written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dcac
from dcac.cli import main
from dcac.inference.image_inputs import ImageInputError


def _one_line_error(capsys, *fragments: str) -> None:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("dcac ")]
    assert len(errors) == 1, err
    assert all(fragment in errors[0] for fragment in fragments), errors[0]


def test_extract_applies_exif_orientation_and_scales_16_bit(tiny_run, draw_person, tmp_path):
    model = dcac.load(tiny_run)
    upright = draw_person(5, size=(48, 24))
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn the stored picture a quarter clockwise to show it"
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.png", exif=exif)
    expected = model.extract(np.asarray(upright))
    torch.testing.assert_close(model.extract(tmp_path / "sideways.png"), expected)
    with Image.open(tmp_path / "sideways.png") as opened:  # an opened PIL image is read the same way
        torch.testing.assert_close(model.extract(opened), expected)

    grey = np.asarray(upright.convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    torch.testing.assert_close(model.extract(tmp_path / "grey16.png"), model.extract(np.stack([grey] * 3, axis=-1)))


@pytest.mark.parametrize("shape", [(0, 24, 3), (48, 0, 3)])
def test_an_empty_array_is_an_error_naming_it(tiny_run, draw_person, shape):
    model = dcac.load(tiny_run)
    empty = np.zeros(shape, dtype=np.uint8)
    with pytest.raises(ImageInputError, match=rf"array of shape \({shape[0]}, {shape[1]}, 3\).*empty image"):
        model.extract(empty)
    with pytest.raises(ImageInputError, match="empty image"):
        dcac.compare(empty, np.zeros((48, 24, 3), dtype=np.uint8), model, threshold=1.0)


def test_compare_refuses_a_folder(tiny_run, image_tree):
    model = dcac.load(tiny_run)
    image = next(image_tree["query"].iterdir())
    with pytest.raises(ValueError, match=f"{image_tree['gallery']} is a folder"):
        dcac.compare(image, image_tree["gallery"], model, threshold=1.0)
    with pytest.raises(ValueError, match=f"{image_tree['gallery']} is a folder"):
        dcac.compare(image_tree["gallery"], image, model, threshold=1.0)
    with pytest.raises(ValueError, match="one image each.*got a list"):
        dcac.compare([image, image], image, model, threshold=1.0)


def test_a_decompression_bomb_is_one_line_and_skipped_when_asked(
    tiny_run, image_tree, tmp_path, capsys, decompression_bomb
):
    folder = tmp_path / "gallery"
    shutil.copytree(image_tree["gallery"], folder)
    decompression_bomb(folder / "0009_c1s1_000001_00.png")
    out = tmp_path / "g.safetensors"
    args = ["extract", str(folder), "--checkpoint", str(tiny_run), "--out", str(out), "--device", "cpu"]
    assert main(args) == 2
    _one_line_error(capsys, "0009_c1s1_000001_00.png", "exceeds limit")
    assert main([*args, "--on-corrupt", "skip"]) == 0
    assert "skipped 1 unreadable images" in capsys.readouterr().err


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="needs a file system that takes any bytes as a name")
def test_search_writes_results_for_non_utf8_file_names(tiny_run, image_tree, tmp_path):
    gallery = tmp_path / "gallery"
    shutil.copytree(image_tree["gallery"], gallery)
    odd = os.fsdecode(b"0002_c1s1_caf\xe9_00.jpg")  # latin-1 "café": not UTF-8
    (gallery / "0002_c1s1_000001_00.jpg").rename(gallery / odd)
    out = tmp_path / "results"
    argv = ["search", str(image_tree["query"]), "--gallery", str(gallery), "--out", str(out), "--topk", "8"]
    assert main([*argv, "--checkpoint", str(tiny_run), "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    paths = [r["path"] for q in results["queries"] for r in q["results"]]
    assert str(gallery / odd) in paths and Path(str(gallery / odd)).is_file()  # JSON keeps the exact name
    page = (out / "results.html").read_text(encoding="utf-8")  # valid UTF-8 throughout
    assert "0002_c1s1_caf\\xe9_00.jpg" in page


def test_eval_refuses_a_decompression_bomb_in_one_line_and_skips_it_when_asked(
    tiny_run, tmp_path, capsys, decompression_bomb
):
    from dcac.demo.synthetic import write_synthetic

    write_synthetic(tmp_path / "data", domains=["synth_c"])
    bomb = sorted((tmp_path / "data" / "synth_c" / "bounding_box_test").glob("*.jpg"))[-1]
    decompression_bomb(bomb)  # a PNG under a .jpg name: Pillow goes by the content
    args = ["eval", "--checkpoint", str(tiny_run), "--target", "synth_c", "--root", str(tmp_path / "data")]
    assert main([*args, "--device", "cpu"]) == 2
    _one_line_error(capsys, bomb.name, "exceeds limit")
    assert main([*args, "--device", "cpu", "--on-corrupt", "skip", "--out", str(tmp_path / "m.json")]) == 0
    assert "skipped 1 unreadable images of synth_c" in capsys.readouterr().out
