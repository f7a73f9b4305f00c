"""Per-step JSON-lines log of a run (and TensorBoard scalars when tensorboard is installed)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from dcac.storage.checkpoint import write_text_atomic
from dcac.storage.run_folder import LOG


class RunLogger:
    def __init__(self, run_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / LOG
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def log(self, record: dict[str, Any], *, step: int | None = None, prefix: str = "train") -> None:
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), **{k: _plain(v) for k, v in record.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._tb is not None and step is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("time", "epoch", "step"):
                    self._tb.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def drop_log_entries_after(path: str | Path, epoch: int) -> None:
    """Remove the entries of epochs after ``epoch`` (and torn lines) from a log, before training resumes there.

    A run interrupted between checkpoints logged steps that the resumed run repeats; keeping them would
    show those steps twice.
    """
    path = Path(path)
    if not path.is_file():
        return
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or (isinstance(record.get("epoch"), int) and record["epoch"] > epoch):
            dropped += 1
        else:
            kept.append(line + "\n")
    if dropped:
        write_text_atomic(path, "".join(kept))
