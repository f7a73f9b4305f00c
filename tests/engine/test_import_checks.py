"""``dcac import`` refuses what it cannot import faithfully, in one line naming the file: an empty or damaged
file, a key held twice (``x`` and ``module.x``), a shape the file does not store, non-finite weights; and it
never writes into a folder that holds another run unless told to replace that run whole."""

from __future__ import annotations

import json
import os
import resource

import pytest
import torch
from PIL import Image
from test_official_import import SOURCE_IDS, official_reid_layout

from dcac.cli import main
from dcac.models.build import load_reid_model
from dcac.storage.checkpoint import load_tensors, save_tensors_atomic


def _import(ckpt, run, *extra):
    return main(["import", str(ckpt), "--out", str(run), "--config", "demo", *extra])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.splitlines()[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty (0 bytes), not a torch checkpoint"),
        (b"hello world\n", "cannot be read with torch.load"),
        (bytes(4096), "cannot be read with torch.load"),
        ("truncated", "cannot be read with torch.load"),
    ],
    ids=["empty", "text", "zeros", "truncated"],
)
def test_an_empty_or_damaged_file_is_named(tmp_path, capsys, content, message):
    ckpt = tmp_path / "source_x.pth"
    if content == "truncated":
        torch.save(official_reid_layout(num_ids=SOURCE_IDS), ckpt)
        content = ckpt.read_bytes()[: ckpt.stat().st_size // 2]
    ckpt.write_bytes(content)
    assert _import(ckpt, tmp_path / "run") == 2
    line = _one_error_line(capsys)
    assert str(ckpt) in line and message in line
    assert not (tmp_path / "run").exists()  # a failed import leaves nothing behind


def test_a_key_held_with_and_without_module_prefix_is_refused(tmp_path, capsys):
    state = official_reid_layout(num_ids=SOURCE_IDS)
    state["module.encoder.bnneck.bias"] = state["encoder.bnneck.bias"] + 1
    ckpt = tmp_path / "source_x.pth"
    torch.save(state, ckpt)
    assert _import(ckpt, tmp_path / "run") == 2
    line = _one_error_line(capsys)
    assert "holds both 'encoder.bnneck.bias' and 'module.encoder.bnneck.bias'" in line and str(ckpt) in line


def test_a_shape_the_file_does_not_store_is_refused_before_allocating(tmp_path, capsys):
    """A 4e8-identity classifier stored as one number (zero strides) would allocate 51 GB to build the model."""
    state = official_reid_layout(num_ids=SOURCE_IDS)
    state["encoder.fc.weight"] = torch.zeros(1, 1).expand(400_000_000, state["encoder.fc.weight"].shape[1])
    ckpt = tmp_path / "source_x.pth"
    torch.save(state, ckpt)
    assert ckpt.stat().st_size < 1 << 20
    # 4 GB of address space more than now: the 51 GB model cannot be built, the checks need nothing.
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open(f"/proc/{os.getpid()}/statm") as fh:
        in_use = int(fh.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (in_use + (4 << 30), hard))
    try:
        code = _import(ckpt, tmp_path / "run")
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert code == 2
    line = _one_error_line(capsys)
    assert "'encoder.fc.weight' claims shape (400000000, 32)" in line and "damaged or crafted" in line


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_import_and_at_load(tmp_path, capsys, bad):
    state = official_reid_layout(num_ids=SOURCE_IDS)
    state["encoder.image_encoder.proj"][0, 0] = bad
    ckpt = tmp_path / "source_x.pth"
    torch.save(state, ckpt)
    assert _import(ckpt, tmp_path / "run") == 2
    line = _one_error_line(capsys)
    assert str(ckpt) in line and "'encoder.image_encoder.proj' holds 1 NaN/infinite values" in line
    assert not (tmp_path / "run").exists()
    # A run whose weights file went bad afterwards is refused when loaded (extract, eval, export, dcac.load).
    good = tmp_path / "good.pth"
    torch.save(official_reid_layout(num_ids=SOURCE_IDS), good)
    assert _import(good, tmp_path / "run") == 0
    weights = tmp_path / "run" / "reid_model.safetensors"
    tensors = load_tensors(weights)
    tensors["bottleneck.weight"][3] = bad
    save_tensors_atomic(tensors, weights)
    with pytest.raises(Exception, match=r"reid_model.safetensors: 'bottleneck.weight' holds 1 NaN/infinite"):
        load_reid_model(tmp_path / "run")
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (32, 64), (90, 40, 10)).save(images / "a.png")
    argv = ["extract", str(images), "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "f.safetensors")]
    assert main([*argv, "--device", "cpu"]) == 2
    assert "'bottleneck.weight' holds 1 NaN/infinite values" in _one_error_line(capsys)


def _trained_looking_run(tmp_path):
    """An imported run with what training and calibration add to a folder."""
    run = tmp_path / "run"
    ckpt = tmp_path / "source_a.pth"
    torch.save(official_reid_layout(num_ids=SOURCE_IDS, seed=0), ckpt)
    assert _import(ckpt, run) == 0
    (run / "checkpoint").mkdir()
    (run / "checkpoint" / "trainer_state.json").write_text('{"epoch": 3, "global_step": 30}')
    for name in ("metrics.json", "verification.json"):
        (run / name).write_text("{}")
    (run / "report.html").write_text("<html></html>")
    return run


def test_import_over_a_run_is_refused_and_overwrite_replaces_it_whole(tmp_path, capsys):
    run = _trained_looking_run(tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    other = tmp_path / "source_b.pth"
    torch.save(official_reid_layout(num_ids=SOURCE_IDS, seed=1), other)
    capsys.readouterr()
    assert _import(other, run) == 2
    line = _one_error_line(capsys)
    assert f"--out {run} holds another run: pass --overwrite to replace it whole" in line
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert _import(other, run, "--overwrite") == 0
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "reid_model.safetensors", "run_info.json"]
    assert json.loads((run / "run_info.json").read_text())["imported_from"] == str(other)


def test_a_failing_overwrite_keeps_the_run(tmp_path, capsys):
    run = _trained_looking_run(tmp_path)
    names = sorted(p.name for p in run.iterdir())
    bad = tmp_path / "source_bad.pth"
    bad.write_bytes(b"")
    assert _import(bad, run, "--overwrite") == 2
    assert sorted(p.name for p in run.iterdir()) == names


def test_overwrite_never_empties_the_working_folder(tmp_path, monkeypatch, capsys):
    run = _trained_looking_run(tmp_path)
    (run / "notes.txt").write_text("mine")
    other = tmp_path / "source_b.pth"
    torch.save(official_reid_layout(num_ids=SOURCE_IDS, seed=1), other)
    monkeypatch.chdir(run)
    capsys.readouterr()
    assert main(["import", str(other), "--out", ".", "--config", "demo", "--overwrite"]) == 2
    assert "is also the working or home folder" in _one_error_line(capsys)
    assert (run / "notes.txt").read_text() == "mine" and (run / "checkpoint").is_dir()
