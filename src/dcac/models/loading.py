"""Loading a trained Re-ID model from a run folder (kept apart from the modelling code, as diffusers does)."""

from __future__ import annotations

from pathlib import Path

import torch

from dcac.config import load_run_config
from dcac.models.build import build_reid_model
from dcac.storage.checkpoint import CheckpointError, load_tensors
from dcac.storage.run_folder import RUN_CONFIG, read_run_info, resolve_run


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
