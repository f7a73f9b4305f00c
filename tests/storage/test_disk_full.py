"""A full disk while writing: one error naming the file and the space needed, the old file intact, no temporary.

Two ways to fill the disk: a real tiny tmpfs (needs root and ``mount``; skipped otherwise) and ENOSPC raised
by ``os.fsync``, the call where network file systems report it (works anywhere).
"""

from __future__ import annotations

import errno
import os

import pytest
import torch

from dcac.storage.checkpoint import (
    load_tensors,
    load_training_checkpoint,
    save_tensors_atomic,
    save_training_checkpoint,
    write_json_atomic,
)
from dcac.storage.disk_space import DiskFullError, is_disk_full


def _state(value: float, size: int = 16) -> dict[str, torch.Tensor]:
    return {"w": torch.full((size,), float(value))}


def _no_space(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _assert_one_line(err: DiskFullError, path) -> None:
    message = str(err)
    assert "\n" not in message and str(path) in message and "no space left" in message, message
    assert err.errno == errno.ENOSPC


def test_enospc_at_fsync_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    target = tmp_path / "features.safetensors"
    save_tensors_atomic(_state(1), target)
    monkeypatch.setattr(os, "fsync", _no_space)
    with pytest.raises(DiskFullError) as caught:
        save_tensors_atomic(_state(2, size=1000), target)
    _assert_one_line(caught.value, target)
    assert "4.0 KB" in str(caught.value)  # 1000 float32 values
    monkeypatch.undo()
    assert torch.equal(load_tensors(target)["w"], _state(1)["w"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.safetensors"]


def test_enospc_while_writing_the_training_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    save_training_checkpoint(tmp_path, _state(1), {"state": {}, "param_groups": []}, {"epoch": 1})
    monkeypatch.setattr(os, "fsync", _no_space)
    with pytest.raises(DiskFullError) as caught:
        save_training_checkpoint(tmp_path, _state(2), {"state": {}, "param_groups": []}, {"epoch": 2})
    _assert_one_line(caught.value, tmp_path / "checkpoint")
    monkeypatch.undo()
    model_state, _, trainer_state = load_training_checkpoint(tmp_path / "checkpoint")
    assert trainer_state == {"epoch": 1} and torch.equal(model_state["w"], _state(1)["w"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # no staging folder left


def test_other_write_errors_pass_through(tmp_path, monkeypatch):
    def broken(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError) as caught:
        write_json_atomic(tmp_path / "a.json", {"a": 1})
    assert caught.value.errno == errno.EIO and not isinstance(caught.value, DiskFullError)
    assert list(tmp_path.iterdir()) == []


def test_the_ways_writers_report_a_full_disk_are_recognised():
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(Exception("Error while serializing: I/O error: No space left on device (os error 28)"))
    try:
        try:
            raise OSError(errno.EDQUOT, "quota")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # noqa: B904
    except RuntimeError as chained:
        assert is_disk_full(chained)
    assert not is_disk_full(RuntimeError("unexpected pos 704 vs 598"))
