"""A full disk reported as one error naming the file and the space it needs (torch-free, for the CLI too).

Writers report a full disk in different ways: Python's own files raise ``OSError`` with errno ENOSPC,
safetensors a ``SafetensorError`` saying "os error 28", ``torch.save`` into a file object a ``RuntimeError``
whose context is the ``OSError``. ``disk_full_error`` recognises all of them.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_FULL_MESSAGES = ("No space left on device", "Disk quota exceeded", f"os error {errno.ENOSPC}")


class DiskFullError(OSError):
    """No space (or quota) left for ``filename``; the message names it and the space the write needs."""

    def __str__(self) -> str:
        return self.strerror  # the message already names the file: not OSError's "[Errno 28] ...: 'file'"


def human_bytes(size: int) -> str:
    units = ("B", "KB", "MB", "GB", "TB")
    power = min(len(units) - 1, int(math.log10(max(size, 1)) // 3))
    return f"{size / 1000**power:.1f} {units[power]}" if power else f"{size} B"


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` or an exception it was raised from (``__cause__``/``__context__``) is a full disk."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return True
        if any(text in str(current) for text in _FULL_MESSAGES):
            return True
        current = current.__cause__ or current.__context__
    return False


def free_bytes(path: str | Path) -> int | None:
    """Free bytes on the file system holding ``path`` (or its nearest existing folder); None if unknown."""
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def disk_full_error(path: str | Path, needed: int | None, what: str = "") -> DiskFullError:
    """The error for a write of ``path`` (``what``, e.g. "the new checkpoint") that ran out of space."""
    free = free_bytes(path)
    need = f"about {human_bytes(needed)}" if needed is not None else "more than is free"
    have = f"{human_bytes(free)} free there" if free is not None else "free space unknown"
    subject = f"{what} {path}" if what else str(path)
    message = f"no space left on the device to write {subject}: it needs {need} ({have})"
    return DiskFullError(errno.ENOSPC, message, str(path))


def fsync_file(path: str | Path) -> None:
    """Flush ``path``'s data to the disk, so a rename over the old file never publishes unwritten blocks."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def reported_when_full(path: str | Path, needed: int | None, temporaries: Iterable[str | Path] = ()) -> Iterator[None]:
    """A full disk in the block becomes a ``DiskFullError`` for ``path``, once ``temporaries`` are removed."""
    try:
        yield
    except Exception as err:
        if not is_disk_full(err):
            raise
        for temporary in temporaries:  # first, so the message counts the space they held as free
            Path(temporary).unlink(missing_ok=True)
        raise disk_full_error(path, needed) from err
