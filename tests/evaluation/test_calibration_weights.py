"""A stored calibration belongs to the weights it was made on: ``dcac.compare`` refuses it for any other weights,
and a damaged or incomplete ``verification.json`` is one clear error, never a verdict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dcac
from dcac.cli import main
from dcac.config import load_config
from dcac.evaluation.calibration_checks import CalibrationError
from dcac.models.build import build_reid_model
from dcac.storage.checkpoint import save_tensors_atomic
from dcac.storage.run_folder import write_run_metadata


def _person(seed: int) -> Image.Image:
    blocks = np.random.default_rng(seed).integers(0, 256, size=(6, 3, 3), dtype=np.uint8)
    return Image.fromarray(blocks, mode="RGB").resize((24, 48), Image.NEAREST)


def _save_model(run: Path, seed: int) -> None:
    torch.manual_seed(seed)
    save_tensors_atomic(build_reid_model(load_config("demo"), num_ids=4).state_dict(), run / "reid_model.safetensors")


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "shop"
    for pid in range(5):
        for split, takes in (("query", [0]), ("gallery", [1, 2])):
            for take in takes:
                folder = root / split / f"person{pid}"
                folder.mkdir(parents=True, exist_ok=True)
                _person(pid * 10 + take).save(folder / f"{take}.png")
    return root


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, shop) -> Path:
    run = tmp_path_factory.mktemp("run")
    _save_model(run, seed=0)
    write_run_metadata(run, load_config("demo"), {"num_ids": 4, "num_cams": 2, "sources": ["synth_a"]})
    assert main(["calibrate", "--checkpoint", str(run), "--target", str(shop), "--fpr", "0.25", "--device", "cpu"]) == 0
    return run


def _copy_run(source: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in ("reid_model.safetensors", "config.yaml", "run_info.json", "verification.json"):
        (dest / name).write_bytes((source / name).read_bytes())
    return dest


def test_a_calibration_is_refused_for_other_weights(calibrated: Path, shop: Path, tmp_path: Path) -> None:
    run = _copy_run(calibrated, tmp_path / "run")
    a, b = shop / "query" / "person1" / "0.png", shop / "gallery" / "person1" / "1.png"
    assert dcac.compare(a, b, run).threshold == json.loads((run / "verification.json").read_text())["threshold"]
    _save_model(run, seed=1)  # retrained (or imported) in place: the old threshold says nothing about these weights
    with pytest.raises(CalibrationError, match=r"verification.json was calibrated on other weights than .*reid_model"):
        dcac.compare(a, b, run)
    assert dcac.compare(a, b, run, threshold=1.0).threshold == 1.0  # an explicit threshold is the user's own


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"threshold": math.nan}, "'threshold' is nan, expected a finite number"),
        ({"threshold": math.inf}, "'threshold' is inf, expected a finite number"),
        ({"threshold": "0.5"}, "'threshold' is '0.5', expected a finite number"),
        ({"threshold": 9.0}, r"'threshold' 9.0 is outside the euclidean distances of unit features \[0, 4\]"),
        ({"threshold": None, "metric": None}, "missing threshold, metric; run 'dcac calibrate' again"),
        ({"weights_sha256": None}, r"missing weights_sha256 \(written by an older dcac\)"),
        ({"metric": "manhattan"}, "'metric' is 'manhattan', expected one of euclidean, cosine"),
        ({"after_bn": "yes"}, "'after_bn' is 'yes', expected true or false"),
        ({"weights_sha256": "abc"}, "'weights_sha256' is 'abc', expected 64 hex digits"),
    ],
)
def test_a_damaged_calibration_is_one_clear_error(calibrated, shop, tmp_path, change, message) -> None:
    run = _copy_run(calibrated, tmp_path / "run")
    record = json.loads((run / "verification.json").read_text())
    record.update({k: v for k, v in change.items() if v is not None})
    for key in [k for k, v in change.items() if v is None]:
        del record[key]
    (run / "verification.json").write_text(json.dumps(record))
    image = shop / "query" / "person1" / "0.png"
    with pytest.raises(CalibrationError, match=f"{run / 'verification.json'}: {message}"):
        dcac.compare(image, image, run)


def test_a_calibration_file_that_is_not_json_names_the_file(calibrated, shop, tmp_path) -> None:
    run = _copy_run(calibrated, tmp_path / "run")
    (run / "verification.json").write_bytes(b"\xff\xfe not json")
    image = shop / "query" / "person1" / "0.png"
    with pytest.raises(CalibrationError, match="verification.json: not a calibration file"):
        dcac.compare(image, image, run)
