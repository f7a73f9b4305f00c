"""The run folder: its file names (defined here only), writing its metadata, finding its weights, reading its info.

A run folder looks like::

    RUN/
      config.yaml               the fully resolved config of the run
      run_info.json             number of training identities/cameras, sources, dcac version
      reid_model.safetensors    the Re-ID model (encoder + BNNeck + classifier): the deliverable
      checkpoint/               the latest resumable training state (``dcac.storage.checkpoint``)
      log.jsonl                 one JSON line per logged step / evaluation
      metrics.json              the last evaluation
      report.html               the training report (losses, metrics, ranked lists), after an evaluation
      verification.json         the calibrated same/different threshold (``dcac calibrate``)
      teacher_init.safetensors  the teacher's initial state, in a run imported from the official code
      .dcac.lock                held while a command writes the run (``dcac.storage.run_lock``)

``dcac.models.build.load_reid_model`` rebuilds the trained Re-ID model from it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dcac.config import DCACConfig
from dcac.storage.checkpoint import CheckpointError, write_json_atomic, write_text_atomic

RUN_CONFIG = "config.yaml"
RUN_INFO = "run_info.json"
REID_WEIGHTS = "reid_model.safetensors"
LOG = "log.jsonl"
METRICS = "metrics.json"
REPORT_HTML = "report.html"
VERIFICATION = "verification.json"
TEACHER_INIT = "teacher_init.safetensors"
RUN_LOCK = ".dcac.lock"
#: What a run published on the Hub holds (besides its model card): everything needed to load and judge it.
PUBLISHED_FILES = (RUN_CONFIG, RUN_INFO, REID_WEIGHTS, METRICS, VERIFICATION)


def write_run_metadata(run_dir: str | Path, config: DCACConfig, run_info: dict[str, Any]) -> None:
    run_dir = Path(run_dir)
    write_text_atomic(run_dir / RUN_CONFIG, config.to_yaml())
    write_json_atomic(run_dir / RUN_INFO, run_info)


def resolve_run(path: str | Path) -> tuple[Path, Path]:
    """Map a run folder or a weights file inside one to (run folder, weights file)."""
    path = Path(path)
    if path.is_dir():
        run_dir, weights = path, path / REID_WEIGHTS
    elif path.is_file():
        run_dir, weights = path.parent, path
    else:
        raise CheckpointError(f"no run folder or weights file at {path}")
    if not (run_dir / RUN_CONFIG).is_file():
        raise CheckpointError(f"{run_dir} is not a dcac run folder: {RUN_CONFIG} is missing")
    if not weights.is_file():
        raise CheckpointError(f"{run_dir} has no trained Re-ID weights ({weights.name} is missing)")
    return run_dir, weights


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    info_file = Path(run_dir) / RUN_INFO
    try:
        return json.loads(info_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {info_file}: {err}") from err
