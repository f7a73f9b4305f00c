"""Checkpoints and atomic writes, so that an interruption never loses what was there.

The run folder's layout is in ``dcac.storage.run_folder``; its ``checkpoint/`` holds::

    checkpoint/
      model.safetensors      what training changes: the Re-ID model, the ID memory, the prompts (or projection)
                             and the LoRA (or, with diffusion.mode=full, the UNet); the frozen VAE and base
                             UNet are rebuilt from their weights on resume
      optimizer.pt           optimizer state (read back with weights_only=True)
      trainer_state.json     epochs done, global step (and the loss scale with train.compat=official); the
                             LR of an epoch follows from its number, so there is no scheduler state

Every file is written to a temporary name and moved into place with ``os.replace``; the checkpoint folder is
swapped as a whole (new folder complete first, the old one removed last), so a crash at any moment leaves
either the previous or the new checkpoint intact.
A temporary left behind by a writer killed mid-write is removed by the next write of the same file, and every
file gets the permissions the umask gives a new file (not the 0600 of a temporary).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from dcac.storage.errors import CheckpointError
from dcac.storage.weights_only_load import WeightsFileError, load_weights_only

#: The resumable state's folder inside a run folder (``dcac.storage.run_folder``).
CHECKPOINT_DIR = "checkpoint"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(path: Path) -> str:
    # The writer's host and pid in the name let a later write tell a dead writer's leftover from a live one.
    return f".{path.name}.{socket.gethostname()}-{os.getpid()}."


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries of ``path`` left by writers on this host that were killed mid-write."""
    ours = f".{path.name}.{socket.gethostname()}-"
    for tmp in path.parent.glob(f"{glob.escape(ours)}*.tmp"):
        pid = tmp.name[len(ours) :].split(".", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates the file 0600; the output gets the mode any new file would (0666 minus the umask).
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path: str | Path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    _atomic_write(Path(path), write)


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_tensors_atomic(
    tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    # safetensors refuses shared or non-contiguous storage; a detached contiguous CPU copy is what we want anyway.
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    _atomic_write(Path(path), lambda tmp: save_file(plain, tmp, metadata=metadata))


def restore_deliverable(path: str | Path, expected: dict[str, torch.Tensor]) -> bool:
    """Make the weights file at ``path`` hold exactly ``expected``; returns True when it had to be (re)written.

    A missing, unreadable or different file is rewritten, so a checkpoint that holds the weights repairs it.
    """
    try:
        current = load_tensors(path)
    except CheckpointError:
        current = None
    if (
        current is not None
        and current.keys() == expected.keys()
        and all(current[k].dtype == v.dtype and torch.equal(current[k], v.detach().cpu()) for k, v in expected.items())
    ):
        return False
    save_tensors_atomic(expected, path)
    return True


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        return load_file(str(path), device=str(device))
    except Exception as err:  # safetensors raises several error types for a truncated/corrupt file
        raise CheckpointError(f"cannot read safetensors file {path}: {err}") from err


def save_training_checkpoint(
    run_dir: str | Path,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    trainer_state: dict[str, Any],
) -> Path:
    """Write ``RUN/checkpoint`` as a whole: complete the new folder, then swap it in."""
    run_dir = Path(run_dir)
    final = run_dir / CHECKPOINT_DIR
    staging = run_dir / f".{CHECKPOINT_DIR}.new"
    previous = run_dir / f".{CHECKPOINT_DIR}.old"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_tensors_atomic(model_state, staging / "model.safetensors")
    _atomic_write(staging / "optimizer.pt", lambda tmp: torch.save(optimizer_state, tmp))
    write_json_atomic(staging / "trainer_state.json", trainer_state)
    if final.exists():
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(final, previous)
    os.replace(staging, final)
    shutil.rmtree(previous, ignore_errors=True)
    return final


def find_training_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of a run, also after a crash in the middle of a swap."""
    run_dir = Path(run_dir)
    for candidate in (run_dir / CHECKPOINT_DIR, run_dir / f".{CHECKPOINT_DIR}.old"):
        if (candidate / "trainer_state.json").is_file():
            return candidate
    return None


def load_training_checkpoint(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    folder = Path(folder)
    model_state = load_tensors(folder / "model.safetensors")
    optimizer_file = folder / "optimizer.pt"
    try:
        optimizer_state = load_weights_only(optimizer_file)
    except FileNotFoundError:
        raise CheckpointError(f"optimizer state not found: {optimizer_file}") from None
    except WeightsFileError as err:
        raise CheckpointError(str(err)) from None
    state_file = folder / "trainer_state.json"
    try:
        trainer_state = json.loads(state_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read trainer state {state_file}: {err}") from err
    return model_state, optimizer_state, trainer_state
