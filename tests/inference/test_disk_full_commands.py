"""A disk that fills up under ``extract``, ``index``, ``search``, ``export`` and the training checkpoint.

Each runs once with room (the earlier output), then again on a full disk: one line naming the file and the
space needed, the earlier output intact, no temporary left. The disk is a real tmpfs of 2 MB, so the errors
are what the writers really raise; mounting needs root, so these tests are skipped elsewhere
(tests/storage/test_disk_full.py simulates the error anywhere).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from dcac.cli import main
from dcac.storage.checkpoint import load_training_checkpoint, save_training_checkpoint


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    # lazily: tensors loaded from the disk may still map its files until they are garbage-collected
    subprocess.run(["umount", "--lazy", str(disk)], check=True)


def _fill(disk: Path) -> None:
    """Take every free byte of ``disk`` (a tmpfs: what a file is given is taken at once)."""
    with open(disk / "filler", "wb") as fh:
        fh.write(b"\0" * shutil.disk_usage(disk).free)
    assert shutil.disk_usage(disk).free == 0


def _disk_full_line(capsys, path: Path) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("dcac ")]
    assert len(lines) == 1 and str(path) in lines[0] and "no space left" in lines[0], err
    assert "needs about" in lines[0], lines[0]
    return lines[0]


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_extract_and_index_on_a_full_disk(small_disk, tiny_run, image_tree, capsys):
    feats, index = small_disk / "g.safetensors", small_disk / "g.index"
    extract = ["extract", str(image_tree["gallery"]), "--checkpoint", str(tiny_run), "--out", str(feats)]
    assert main(extract) == 0
    pytest.importorskip("faiss")
    assert main(["index", str(feats), "--out", str(index)]) == 0
    before = {p: p.read_bytes() for p in (feats, index)}
    _fill(small_disk)
    capsys.readouterr()
    assert main(extract) == 2
    _disk_full_line(capsys, feats)
    assert main(["index", str(feats), "--out", str(index)]) == 2
    _disk_full_line(capsys, index)
    assert {p: p.read_bytes() for p in (feats, index)} == before
    assert _files(small_disk) == ["filler", "g.index", "g.safetensors"]


def test_search_on_a_full_disk(small_disk, tiny_run, image_tree, capsys):
    out = small_disk / "results"
    search = ["search", str(image_tree["query"]), "--gallery", str(image_tree["gallery"]), "--out", str(out)]
    assert main([*search, "--checkpoint", str(tiny_run)]) == 0
    before = {name: (out / name).read_bytes() for name in ("results.json", "results.html")}
    _fill(small_disk)
    capsys.readouterr()
    assert main([*search, "--checkpoint", str(tiny_run), "--topk", "3"]) == 2
    _disk_full_line(capsys, out / "results.json")
    assert {name: (out / name).read_bytes() for name in before} == before
    assert _files(small_disk) == ["filler", "results", "results/results.html", "results/results.json"]


def test_export_on_a_full_disk(small_disk, tiny_run, capsys):
    pytest.importorskip("onnxruntime")
    out = small_disk / "m.onnx"
    assert main(["export", "--checkpoint", str(tiny_run), "--out", str(out), "--no-verify"]) == 0
    sidecar = small_disk / "m.onnx.metadata.json"  # BoxMOT's, written with every export
    before, sidecar_before = out.read_bytes(), sidecar.read_bytes()
    _fill(small_disk)
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(tiny_run), "--out", str(out), "--no-verify"]) == 2
    _disk_full_line(capsys, out)
    assert out.read_bytes() == before and sidecar.read_bytes() == sidecar_before
    assert _files(small_disk) == ["filler", "m.onnx", "m.onnx.metadata.json"]


def test_training_checkpoint_on_a_full_disk(small_disk):
    weights = {"w": torch.randn(20_000)}  # 80 KB, with as much optimizer state
    optimizer = {"state": {0: {"exp_avg": torch.randn(20_000)}}, "param_groups": []}
    save_training_checkpoint(small_disk, weights, optimizer, {"epoch": 1})
    _fill(small_disk)
    with pytest.raises(OSError) as caught:
        save_training_checkpoint(small_disk, {"w": torch.zeros(20_000)}, optimizer, {"epoch": 2})
    message = str(caught.value)
    assert str(small_disk / "checkpoint") in message and "needs about 160.0 KB" in message, message
    model_state, _, trainer_state = load_training_checkpoint(small_disk / "checkpoint")
    assert trainer_state == {"epoch": 1} and torch.equal(model_state["w"], weights["w"])
    assert sorted(p.name for p in small_disk.iterdir()) == ["checkpoint", "filler"]


def test_the_training_log_on_a_full_disk_names_it(small_disk):
    from dcac.engine.run_logger import RunLogger

    logger = RunLogger(small_disk, tensorboard=False)
    logger.log({"loss": 1.0})
    _fill(small_disk)
    with pytest.raises(OSError) as caught:
        logger.log({"loss": 0.5, "note": "x" * 10_000})
    assert str(small_disk / "log.jsonl") in str(caught.value) and "no space left" in str(caught.value)
