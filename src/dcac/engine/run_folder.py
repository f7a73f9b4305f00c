"""Reading a trained run back: the Re-ID model a user deploys, rebuilt from ``config.yaml`` + weights.

See ``dcac.engine.checkpoint`` for the folder layout.  Only the Re-ID model is needed at inference time;
the diffusion teacher is a training-time component and is never loaded here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dcac.config import DCACConfig, load_run_config
from dcac.engine.checkpoint import REID_WEIGHTS, RUN_CONFIG, RUN_INFO, CheckpointError, load_tensors, write_json_atomic, write_text_atomic
from dcac.models.build import build_reid_model


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


def load_reid_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the trained Re-ID model of a run, in eval mode.

    Returns ``(model, config, run_info)``.
    """
    run_dir, weights = resolve_run(path)
    config = load_run_config(run_dir / RUN_CONFIG)
    run_info = read_run_info(run_dir)
    model = build_reid_model(config, num_ids=int(run_info["num_ids"]))
    state = load_tensors(weights)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{weights} does not match the model of {run_dir / RUN_CONFIG}: "
            f"missing keys {sorted(missing)[:5]}, unexpected keys {sorted(unexpected)[:5]}"
        )
    return model.to(device).eval(), config, run_info
