"""``dcac eval --roc / --splits / --option``, ``dcac calibrate``, ``dcac.compare`` and ``dcac data check`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dcac
from dcac.cli import main
from dcac.config import load_config
from dcac.evaluation.distance import compute_distance
from dcac.models.build import build_reid_model
from dcac.storage.checkpoint import save_tensors_atomic
from dcac.storage.run_folder import write_run_metadata


def person(seed: int) -> Image.Image:
    blocks = np.random.default_rng(seed).integers(0, 256, size=(6, 3, 3), dtype=np.uint8)
    return Image.fromarray(blocks, mode="RGB").resize((24, 48), Image.NEAREST)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = load_config("demo")
    run = tmp_path_factory.mktemp("run")
    save_tensors_atomic(build_reid_model(config, num_ids=4).state_dict(), run / "reid_model.safetensors")
    write_run_metadata(run, config, {"num_ids": 4, "num_cams": 2, "sources": ["synth_a"]})
    return run


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """An evaluation-only folder-per-identity set without cameras: 5 people, 1 query and 2 gallery images."""
    root = tmp_path_factory.mktemp("data") / "shop"
    for pid in range(5):
        for split, takes in (("query", [0]), ("gallery", [1, 2])):
            for take in takes:
                folder = root / split / f"person{pid}"
                folder.mkdir(parents=True, exist_ok=True)
                person(pid * 10 + take).save(folder / f"{take}.png")
    return root


def test_eval_roc_on_an_evaluation_only_folder(run_dir: Path, shop: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "metrics.json"
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(run_dir),
                "--target",
                str(shop),
                "--roc",
                "--fpr",
                "0.25",
                "--device",
                "cpu",
                "--out",
                str(out),
                "--report",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "layout: folders (detected)" in printed and "no cameras given" in printed and "EER" in printed
    verification = json.loads(out.read_text())[str(shop)]["verification"]
    # no-camera rule: every query/gallery pair counts; 5 queries x 2 genuine, 5 x 8 impostor
    assert verification["num_genuine_pairs"] == 10 and verification["num_impostor_pairs"] == 40
    assert set(verification["tpr_at_fpr"]) == {"0.0001", "0.001", "0.01", "0.25"}
    assert verification["tpr_at_fpr"]["0.25"]["fpr"] <= 0.25
    report = (run_dir / "report.html").read_text()
    assert "Verification: " in report and "10 same-identity and 40 different-identity pairs" in report


def test_calibrate_then_compare(run_dir: Path, shop: Path, capsys) -> None:
    assert (
        main(["calibrate", "--checkpoint", str(run_dir), "--target", str(shop), "--fpr", "0.25", "--device", "cpu"])
        == 0
    )
    record = json.loads((run_dir / "verification.json").read_text())
    assert record["fpr_target"] == 0.25 and record["fpr"] <= 0.25 and record["target"] == "shop"
    assert f"appearance_thresh={record['threshold'] / 2:.4g} (BoT-SORT)" in capsys.readouterr().out
    a, b = shop / "query" / "person1" / "0.png", shop / "gallery" / "person1" / "1.png"
    answer = dcac.compare(a, b, run_dir)
    model = dcac.load(run_dir)
    feats = model.extract([a, b])
    expected = float(compute_distance(feats[:1], feats[1:], record["metric"])[0, 0])
    assert answer.distance == pytest.approx(expected, abs=1e-6) and answer.threshold == record["threshold"]
    assert answer.same == (answer.distance < record["threshold"])
    assert dcac.compare(a, b, model, threshold=answer.distance + 1e-3).same


def test_compare_without_calibration_names_the_file(tmp_path: Path, run_dir: Path, shop: Path) -> None:
    other = tmp_path / "run"
    other.mkdir()
    for name in ("reid_model.safetensors", "config.yaml", "run_info.json"):
        (other / name).write_bytes((run_dir / name).read_bytes())
    image = shop / "query" / "person1" / "0.png"
    with pytest.raises(FileNotFoundError, match="verification.json.*dcac calibrate"):
        dcac.compare(image, image, other)


def write_grid(root: Path) -> None:
    base = root / "grid" / "underground_reid"
    for folder in ("probe", "gallery"):
        (base / folder).mkdir(parents=True)
    for pid in range(1, 9):
        person(pid).save(base / "probe" / f"{pid:04d}_{pid % 8 + 1}_25004_1_2_3_4.jpeg")
        person(pid + 100).save(base / "gallery" / f"{pid:04d}_{(pid + 3) % 8 + 1}_25009_1_2_3_4.jpeg")
    person(999).save(base / "gallery" / "0000_2_10001_1_2_3_4.jpeg")


def test_eval_over_splits_reports_each_and_the_mean(run_dir: Path, tmp_path: Path, capsys) -> None:
    write_grid(tmp_path)
    out = tmp_path / "splits.json"
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(run_dir),
                "--target",
                "grid",
                "--root",
                str(tmp_path),
                "--splits",
                "0-2",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())["grid"]
    assert sorted(result["splits"]) == ["0", "1", "2"]
    assert result["mean"]["mAP"] == pytest.approx(np.mean([m["mAP"] for m in result["splits"].values()]))
    single = tmp_path / "one.json"
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(run_dir),
                "--target",
                "grid",
                "--root",
                str(tmp_path),
                "--option",
                "grid.split=1",
                "--device",
                "cpu",
                "--out",
                str(single),
            ]
        )
        == 0
    )
    assert json.loads(single.read_text())["grid"]["mAP"] == pytest.approx(result["splits"]["1"]["mAP"], abs=1e-4)
    assert "mean of 3 splits" in capsys.readouterr().out


def test_data_check_reports_duplicates_unreadable_and_unmatched(shop: Path, tmp_path: Path, capsys) -> None:
    root = tmp_path / "checked"
    for split in ("query", "gallery", "train"):
        for file in (shop / split).rglob("*.png") if (shop / split).is_dir() else []:
            target = root / file.relative_to(shop)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(file.read_bytes())
    (root / "train" / "solo").mkdir(parents=True)
    person(1000).save(root / "train" / "solo" / "a.png")
    (root / "train" / "solo" / "b.png").write_bytes(b"not an image")
    (root / "gallery" / "person0" / "copy.png").write_bytes((root / "query" / "person0" / "0.png").read_bytes())
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "unreadable images: 1" in out and "b.png" in out
    assert "duplicate files: 1 groups" in out and "1 shared by query and gallery" in out
    assert "train: 1 identities with a single image" in out  # solo's readable image
    assert "queries without a gallery match from another camera (skipped by the evaluation): 0" in out
