"""A run folder's metadata: writing ``config.yaml`` + ``run_info.json``, finding a run's weights, reading its info.

See ``dcac.storage.checkpoint`` for the folder layout; ``dcac.models.loading.load_reid_model`` rebuilds the
trained Re-ID model from it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dcac.config import DCACConfig
from dcac.storage.checkpoint import (
    REID_WEIGHTS,
    RUN_CONFIG,
    RUN_INFO,
    CheckpointError,
    write_json_atomic,
    write_text_atomic,
)


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
