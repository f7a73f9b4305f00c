"""One owner per run folder: a lock held while a command writes the folder, and replacing a run whole.

``dcac train`` and ``dcac import`` write many files into one folder; two of them at once (or one over a run
it does not own) leave a folder whose files belong to different models.  The lock is ``RUN/.dcac.lock``,
held with ``flock`` for the writer's lifetime: the kernel releases it when the holder exits or is killed,
so a dead holder's lock is simply taken over, and a live holder (also on another host, where the file
system carries the lock) makes the second command stop with one line naming its PID and host.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from dcac.storage.checkpoint import CHECKPOINT_DIR
from dcac.storage.errors import CheckpointError
from dcac.storage.run_folder import REID_WEIGHTS, RUN_INFO, RUN_LOCK

# The files whose presence makes a folder hold a run: a model, a checkpoint, or the run info written before them
# (names specific to dcac: a folder that merely has a config.yaml is not taken for a run and emptied).
RUN_MARKERS = (
    RUN_INFO,
    REID_WEIGHTS,
    f"{CHECKPOINT_DIR}/trainer_state.json",
    f".{CHECKPOINT_DIR}.old/trainer_state.json",
)

# File systems without flock (some FUSE and old NFS mounts): the run goes on unlocked, with a warning.
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}


class RunFolderBusyError(CheckpointError):
    """Another live process writes the run folder; the message names it."""


class RunFolderTakenError(CheckpointError):
    """The folder holds another run, which the command would mix with its own files."""


class RunLock:
    """The held lock of one run folder; ``release()`` (or leaving the ``with`` block) gives it up."""

    def __init__(self, path: Path, handle: int | None, *, created_folder: bool = False) -> None:
        self.path = path
        self._handle = handle
        self._created_folder = created_folder

    def release(self) -> None:
        if self._handle is None:
            return
        # Unlink while still holding the lock: a waiting process re-checks that its file is still the lock.
        self.path.unlink(missing_ok=True)
        os.close(self._handle)
        self._handle = None
        if self._created_folder and not any(self.path.parent.iterdir()):
            self.path.parent.rmdir()  # a command that failed before writing leaves no empty folder behind

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"PID {info['pid']} on host {info['host']} ({info['command']}, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not written its PID yet)"


def lock_run_folder(run_dir: str | Path, command: str) -> RunLock:
    """Hold ``RUN/.dcac.lock`` for ``command``; a folder locked by a live process is a ``RunFolderBusyError``."""
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RUN_LOCK
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(handle)
            if err.errno in _NO_LOCKING:
                print(
                    f"warning: {path}: the file system cannot lock files; nothing stops a second writer",
                    file=sys.stderr,
                )
                return RunLock(path, None)
            raise RunFolderBusyError(
                f"{run_dir} is in use by {_holder(path)}: wait for it to finish, stop it, or choose another folder"
            ) from None
        # The previous holder may have unlinked the file between our open and our lock: then lock the new one.
        try:
            if os.stat(path).st_ino == os.fstat(handle).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(handle)
    since = time.strftime("%Y-%m-%d %H:%M:%S")
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": since}
    os.ftruncate(handle, 0)
    os.pwrite(handle, (json.dumps(record) + "\n").encode(), 0)
    return RunLock(path, handle, created_folder=created)


def holds_run(run_dir: str | Path) -> bool:
    """Whether the folder holds a run (its metadata, a model or a checkpoint)."""
    run_dir = Path(run_dir)
    return any((run_dir / name).exists() for name in RUN_MARKERS)


def clear_run_folder(run_dir: str | Path) -> None:
    """Delete everything in a run folder but its lock: the run is replaced whole, never mixed with the next one.

    The working directory, a folder above it and the home folder are refused: a run there shares the folder
    with files that are not the run's.
    """
    run_dir = Path(run_dir)
    resolved, cwd = run_dir.resolve(), Path.cwd().resolve()
    if resolved in (cwd, *cwd.parents, Path.home().resolve()):
        raise RunFolderTakenError(
            f"{run_dir} holds a run but is also the working or home folder (or above it): replacing the run would "
            "delete everything in it; move the run into a folder of its own"
        )
    for entry in run_dir.iterdir():
        if entry.name == RUN_LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
