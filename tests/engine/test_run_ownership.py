"""A run folder has one owner: ``dcac train`` holds its lock (a second command stops with one line naming the
holder's PID and host; a dead holder's lock is taken over), resumes only its own run, and ``--no-resume``
replaces the run in the folder whole instead of mixing two runs' files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_official_import import SOURCE_IDS, official_reid_layout

from dcac.cli import main
from dcac.demo.synthetic import write_synthetic
from dcac.storage.run_folder import RUN_LOCK
from dcac.storage.run_lock import RunFolderBusyError, lock_run_folder

SRC = Path(__file__).resolve().parents[2] / "src"
HOLD = (
    "import sys, time\n"
    "from dcac.storage.run_lock import lock_run_folder\n"
    "lock = lock_run_folder(sys.argv[1], 'dcac train')\n"
    "print('held', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_synthetic(
        root,
        domains=["synth_a", "synth_b", "synth_c"],
        num_train_ids=6,
        num_test_ids=4,
        images_per_id=2,
        num_distractors=1,
        height=64,
        width=32,
    )
    return root


def _train(root, out, *extra):
    overrides = [
        f"data.root={root}",
        f"train.output_dir={out}",
        "train.progress=false",
        "optim.epochs=1",
        "optim.warmup_epochs=0",
        "train.max_steps_per_epoch=1",
        "data.batch_size=8",
        "data.num_instances=2",
    ]
    return main(["train", "--config", "demo", *overrides, *extra])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.splitlines()[0]


@pytest.fixture
def holder(tmp_path):
    """A live process of another command holding ``tmp_path / 'run'``."""
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout.readline().strip() == "held"
    yield child
    child.kill()
    child.wait()


def test_a_second_train_into_a_busy_folder_stops_naming_the_holder(synth_root, tmp_path, holder, capsys):
    assert _train(synth_root, tmp_path / "run") == 2
    line = _one_error_line(capsys)
    assert f"is in use by PID {holder.pid} on host {socket.gethostname()} (dcac train" in line
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [RUN_LOCK]  # nothing written
    ckpt = tmp_path / "source_x.pth"
    torch.save(official_reid_layout(num_ids=SOURCE_IDS), ckpt)
    assert main(["import", str(ckpt), "--out", str(tmp_path / "run"), "--config", "demo"]) == 2
    assert f"PID {holder.pid}" in _one_error_line(capsys)


def test_a_dead_holders_lock_is_taken_over(tmp_path, holder):
    lock_file = tmp_path / "run" / RUN_LOCK
    with pytest.raises(RunFolderBusyError, match=f"PID {holder.pid}"):
        lock_run_folder(tmp_path / "run", "test")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert json.loads(lock_file.read_text())["pid"] == holder.pid  # the dead holder's lock file is still there
    with lock_run_folder(tmp_path / "run", "test"):
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    assert not lock_file.exists()  # released


def test_train_refuses_an_imported_model_and_no_resume_replaces_a_run_whole(synth_root, tmp_path, capsys):
    run = tmp_path / "run"
    ckpt = tmp_path / "source_x.pth"
    torch.save(official_reid_layout(num_ids=SOURCE_IDS), ckpt)
    assert main(["import", str(ckpt), "--out", str(run), "--config", "demo"]) == 0
    imported = (run / "reid_model.safetensors").read_bytes()
    assert _train(synth_root, run) == 2
    line = _one_error_line(capsys)
    assert f"{run} holds a model without a training checkpoint" in line and "--no-resume" in line
    assert (run / "reid_model.safetensors").read_bytes() == imported
    (run / "verification.json").write_text("{}")  # what a calibration of the imported model left
    assert _train(synth_root, run, "--no-resume") == 0
    assert not (run / "verification.json").exists()
    assert "imported_from" not in json.loads((run / "run_info.json").read_text())
    assert (run / "checkpoint" / "trainer_state.json").is_file() and not (run / RUN_LOCK).exists()


def test_two_real_trains_into_one_folder(synth_root, tmp_path, capsys):
    """The issue's case: a second ``dcac train`` while the first is training stops; the first is untouched."""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    overrides = [f"data.root={synth_root}", f"train.output_dir={run}", "train.progress=false", "optim.epochs=200"]
    first = subprocess.Popen(
        [sys.executable, "-m", "dcac.cli", "train", "--config", "demo", *overrides],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / RUN_LOCK).is_file() or not (run / RUN_LOCK).read_text():
            assert first.poll() is None and time.monotonic() < deadline, "the first training did not start"
            time.sleep(0.2)
        assert _train(synth_root, run) == 2
        assert f"is in use by PID {first.pid} on host {socket.gethostname()}" in _one_error_line(capsys)
        assert first.poll() is None  # still training
    finally:
        first.kill()
        first.wait()


def test_every_rank_of_a_distributed_train_stops_at_a_busy_folder(synth_root, tmp_path, holder):
    """Rank 0 finds the folder busy; rank 1 must stop too, not wait for rank 0 at the first collective."""
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    env = {
        **os.environ,
        "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    overrides = [f"data.root={synth_root}", f"train.output_dir={tmp_path / 'run'}", "train.progress=false"]
    cmd = [*launcher, "--standalone", "--nproc_per_node=2", "-m", "dcac.cli", "train", "--config", "demo", *overrides]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode != 0
    assert done.stderr.count(f"is in use by PID {holder.pid} on host {socket.gethostname()}") == 2, done.stderr[-3000:]
