"""What makes a resumed run follow exactly the trajectory of an uninterrupted one.

Every RNG is seeded from ``(seed, epoch)`` at the start of each epoch, and a checkpoint, written at an epoch's
end, holds everything training changes (model, optimiser, the loss scale under ``train.compat=official``) but
nothing that can be rebuilt (the frozen VAE and base UNet).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcac.config import DCACConfig, load_run_config
from dcac.models.dcac import DCAC
from dcac.storage.checkpoint import find_training_checkpoint, load_training_checkpoint, restore_deliverable
from dcac.storage.run_folder import REID_WEIGHTS, RUN_CONFIG


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch of a run seeded with ``seed``."""
    return seed * 100_003 + epoch


def trainable_state(model: DCAC) -> dict[str, torch.Tensor]:
    """What a checkpoint must hold: all of the Re-ID side, and of the teacher only what training changes.

    The frozen VAE and the frozen base UNet are rebuilt from their weights on resume, so a checkpoint stays
    the size of the Re-ID model plus LoRA instead of gigabytes.
    """
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    return {
        k: v
        for k, v in model.state_dict().items()
        if not k.startswith("teacher.") or k in trainable or _is_compat_bias(k)
    }


def _is_compat_bias(name: str) -> bool:
    """The frozen q/k/v biases of ``train.compat=official``: in no pre-trained file, so the checkpoint keeps them
    (an imported release's biases must survive a resume; a seed-drawn set is simply saved as drawn)."""
    return name.endswith((".to_q.base_layer.bias", ".to_k.base_layer.bias", ".to_v.base_layer.bias"))


def check_resumable(run_dir: Path, config: DCACConfig) -> None:
    """Refuse to resume a run folder that was trained with different settings (only ``train.*`` may change)."""
    saved = load_run_config(run_dir / RUN_CONFIG).to_dict()
    current = config.to_dict()
    saved.pop("train"), current.pop("train")
    if saved != current:
        diff = sorted(f"{s}.{k}" for s in saved for k in saved[s] if saved[s][k] != current[s][k])
        raise ValueError(
            f"{run_dir} holds a run with a different config ({', '.join(diff)}); "
            "choose another train.output_dir or pass --no-resume to replace that run whole"
        )


def resume_from_checkpoint(
    config: DCACConfig,
    model: DCAC,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    is_main: bool,
) -> tuple[int, int]:
    """Load the run folder's checkpoint, if any, into model, optimiser (and gradient scaler); returns (epochs
    done, global step).

    The deliverable ``reid_model.safetensors`` is made to match the checkpoint (rewritten if it is missing,
    unreadable or from another epoch), so re-running a finished command repairs it.
    """
    run_dir = Path(config.train.output_dir)
    checkpoint = find_training_checkpoint(run_dir)
    if checkpoint is None:
        return 0, 0
    check_resumable(run_dir, config)
    model_state, optimizer_state, trainer_state = load_training_checkpoint(checkpoint)
    missing, unexpected = model.load_state_dict(model_state, strict=False)
    needed = set(trainable_state(model))
    missing = [k for k in missing if k in needed]
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {checkpoint} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    load_optimizer_state(optimizer, optimizer_state)
    if scaler is not None and "grad_scaler" in trainer_state:
        scaler.load_state_dict(trainer_state["grad_scaler"])
    epoch, global_step = int(trainer_state["epoch"]), int(trainer_state["global_step"])
    if is_main:
        print(f"resuming {run_dir} after epoch {epoch}")
        if restore_deliverable(run_dir / REID_WEIGHTS, model.reid.state_dict()):
            print(f"restored {run_dir / REID_WEIGHTS} from the checkpoint of epoch {epoch}")
    return epoch, global_step


#: Parameter-group entries that follow from the config, not from training: taken from the groups the run builds.
CONFIG_GROUP_KEYS = ("base_lr", "name")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict``, keeping the built groups' ``base_lr`` and ``name`` where the saved groups
    lack them (checkpoints of dcac 0.1, written before the groups carried them: resumable all the same, as
    ``check_resumable`` has ensured that the config, which sets them, is the run's)."""
    built = [{k: group[k] for k in CONFIG_GROUP_KEYS if k in group} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, constants in zip(optimizer.param_groups, built):
        for key, value in constants.items():
            group.setdefault(key, value)
