import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import dcac as dcac_src
from dcac.storage.checkpoint import (
    CheckpointError,
    find_training_checkpoint,
    load_tensors,
    load_training_checkpoint,
    save_tensors_atomic,
    save_training_checkpoint,
    write_json_atomic,
)


def _state(value):
    return {"w": torch.full((2, 3), float(value)), "b": torch.arange(3)}


def test_training_checkpoint_round_trip(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    save_training_checkpoint(tmp_path, _state(1), opt.state_dict(), {"epoch": 3, "global_step": 30})
    folder = find_training_checkpoint(tmp_path)
    state, opt_state, trainer_state = load_training_checkpoint(folder)
    assert torch.equal(state["w"], _state(1)["w"]) and trainer_state == {"epoch": 3, "global_step": 30}
    fresh = torch.optim.Adam(model.parameters())
    fresh.load_state_dict(opt_state)
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_second_checkpoint_replaces_the_first_and_leaves_no_temporaries(tmp_path):
    save_training_checkpoint(tmp_path, _state(1), {}, {"epoch": 1, "global_step": 1})
    save_training_checkpoint(tmp_path, _state(2), {}, {"epoch": 2, "global_step": 2})
    state, _, trainer_state = load_training_checkpoint(find_training_checkpoint(tmp_path))
    assert trainer_state["epoch"] == 2 and state["w"][0, 0] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_crash_during_swap_keeps_the_previous_checkpoint(tmp_path):
    save_training_checkpoint(tmp_path, _state(1), {}, {"epoch": 1, "global_step": 1})
    # A crash after the old folder was moved aside but before the new one was moved in:
    (tmp_path / "checkpoint").rename(tmp_path / ".checkpoint.old")
    (tmp_path / ".checkpoint.new").mkdir()  # incomplete staging folder
    folder = find_training_checkpoint(tmp_path)
    assert folder.name == ".checkpoint.old"
    assert load_training_checkpoint(folder)[2]["epoch"] == 1


def test_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_tensors_atomic(_state(1), path)
    with pytest.raises(AttributeError):  # safetensors: a str has no tensor attributes
        save_tensors_atomic({"bad": "not a tensor"}, path)
    assert load_tensors(path)["w"][0, 0] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["weights.safetensors"]


def test_corrupt_or_missing_files_are_named(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="x.safetensors"):
        load_tensors(bad)
    with pytest.raises(CheckpointError, match="missing.safetensors"):
        load_tensors(tmp_path / "missing.safetensors")
    assert find_training_checkpoint(tmp_path) is None
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "trainer_state.json").write_text(json.dumps({"epoch": 1}))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_training_checkpoint(tmp_path / "checkpoint")


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_get_the_mode_the_umask_gives_a_new_file(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "metrics.json", {"mAP": 1.0})
        save_tensors_atomic(_state(1), tmp_path / "reid_model.safetensors")
        save_training_checkpoint(tmp_path, _state(1), {"state": {}, "param_groups": []}, {"epoch": 1})
        (tmp_path / "plain.txt").write_text("reference")  # what open() gives a new file under this umask
    finally:
        os.umask(old)
    expected = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert expected == 0o666 & ~umask
    for name in (
        "metrics.json",
        "reid_model.safetensors",
        "checkpoint/model.safetensors",
        "checkpoint/optimizer.pt",
        "checkpoint/trainer_state.json",
    ):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


_HANGING_WRITER = """
import sys, time
from pathlib import Path
from dcac.storage.checkpoint import _atomic_write

def write(tmp):
    with open(tmp, "wb") as fh:
        fh.write(b"x" * 4096)
        fh.flush()
        Path(sys.argv[2]).touch()
        time.sleep(600)

_atomic_write(Path(sys.argv[1]), write)
"""


def test_a_write_killed_midway_leaves_the_old_file_and_its_temporary_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "reid_model.safetensors"
    save_tensors_atomic(_state(1), target)
    started = tmp_path / "started"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(dcac_src.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    writer = subprocess.Popen([sys.executable, "-c", _HANGING_WRITER, str(target), str(started)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert writer.poll() is None and time.monotonic() < deadline, "the writer did not start writing"
            time.sleep(0.05)
    finally:
        writer.kill()
        writer.wait()
    leftovers = list(tmp_path.glob(".reid_model.safetensors.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size == 4096
    assert torch.equal(load_tensors(target)["w"], _state(1)["w"])  # the old file is intact

    save_tensors_atomic(_state(2), target)
    assert not list(tmp_path.glob(".*.tmp"))
    assert torch.equal(load_tensors(target)["w"], _state(2)["w"])


def test_a_live_writers_temporary_is_left_alone(tmp_path):
    target = tmp_path / "metrics.json"
    live = tmp_path / f".metrics.json.{socket.gethostname()}-{os.getpid()}.abc123.tmp"
    live.write_text("being written")
    write_json_atomic(target, {"a": 1})
    assert live.exists() and json.loads(target.read_text()) == {"a": 1}
