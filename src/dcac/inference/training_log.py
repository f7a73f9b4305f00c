"""Reading a run's ``log.jsonl`` back into curves for the report.

Training lines carry ``epoch``, ``step`` and loss keys (``loss``, ``loss_id``, ``loss_pcl``,
``loss_diff``, ...) plus ``acc``; evaluation lines carry ``"event": "eval"``; epoch lines (``"event": "epoch"``)
carry the epoch's mean of every step term under ``means``.  The log is appended to while
training runs, so a torn last line (or any unreadable line) is skipped and counted, never fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCURACY_KEY = "acc"
EVAL_EVENT = "eval"
EPOCH_EVENT = "epoch"
MECHANISM_EVENT = "mechanism"


@dataclass
class TrainingLog:
    steps: list[float] = field(default_factory=list)
    step_label: str = "step"
    losses: dict[str, list[float | None]] = field(default_factory=dict)
    accuracy: list[float | None] = field(default_factory=list)
    evaluations: list[dict[str, float | str]] = field(default_factory=list)
    #: Per epoch, the means of the step terms over the epoch (``"event": "epoch"`` lines), with ``epoch``.
    epoch_means: list[dict[str, float]] = field(default_factory=list)
    #: Per epoch, the mechanism measurements on a fixed batch (``"event": "mechanism"`` lines, from ``dcac demo``).
    mechanism: list[dict[str, float]] = field(default_factory=list)
    skipped_lines: int = 0


def _flatten_scalars(record: dict[str, Any], prefix: str = "") -> dict[str, float | str]:
    """Number and text leaves of a (possibly nested) record, keyed ``outer/inner``; lists such as CMC are left out."""
    flat: dict[str, float | str] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten_scalars(value, f"{name}/"))
        elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
            flat[name] = value
    return flat


def read_training_log(path: str | Path) -> TrainingLog:
    log = TrainingLog()
    path = Path(path)
    if not path.is_file():
        return log
    train_records: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            log.skipped_lines += 1
            continue
        if not isinstance(record, dict):
            log.skipped_lines += 1
        elif record.get("event") == EVAL_EVENT:
            log.evaluations.append({k: v for k, v in _flatten_scalars(record).items() if k not in ("time", "event")})
        elif record.get("event") == EPOCH_EVENT and isinstance(record.get("means"), dict):
            log.epoch_means.append({"epoch": record.get("epoch"), **record["means"]})
        elif record.get("event") == MECHANISM_EVENT:
            log.mechanism.append({k: v for k, v in _flatten_scalars(record).items() if k not in ("time", "event")})
        elif "step" in record and "event" not in record:
            train_records.append(record)
    steps = [float(r["step"]) for r in train_records]
    # A per-epoch step counter would fold the curves back on themselves; plot by log entry instead.
    if any(b < a for a, b in zip(steps, steps[1:])):
        steps, log.step_label = [float(i) for i in range(len(train_records))], "log entry"
    log.steps = steps
    loss_keys = sorted({k for r in train_records for k in r if k.startswith("loss") and isinstance(r[k], (int, float))})
    log.losses = {k: [r.get(k) for r in train_records] for k in loss_keys}
    if any(ACCURACY_KEY in r for r in train_records):
        log.accuracy = [r.get(ACCURACY_KEY) for r in train_records]
    return log
