import json

import pytest
import torch

from dcac.engine.checkpoint import (
    CheckpointError,
    find_training_checkpoint,
    load_tensors,
    load_training_checkpoint,
    save_tensors_atomic,
    save_training_checkpoint,
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
    with pytest.raises(Exception):
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
