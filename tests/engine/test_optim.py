import pytest
import torch

from dcac.config import OptimConfig
from dcac.engine.optim import build_optimizer, lr_factor, set_epoch_lr


# The official schedule, epoch by epoch (1-based e, as the official trainer steps WarmupMultiStepLR before each
# epoch): 0.1 (1 - e/10) + e/10 for e < 10, then 0.1^k after k of the milestones 30, 50 are <= e.
OFFICIAL_TABLE = (
    [0.19, 0.28, 0.37, 0.46, 0.55, 0.64, 0.73, 0.82, 0.91]  # epochs 1-9
    + [1.0] * 20  # epochs 10-29
    + [0.1] * 20  # epochs 30-49
    + [0.01] * 11  # epochs 50-60
)


def test_schedule_is_the_official_table_for_all_60_epochs():
    o = OptimConfig()
    assert len(OFFICIAL_TABLE) == o.epochs == 60
    factors = [lr_factor(epoch, o) for epoch in range(o.epochs)]  # the trainer's 0-based epochs
    assert factors == pytest.approx(OFFICIAL_TABLE, rel=1e-12)


def test_groups_and_lr_multiplier():
    model = torch.nn.ModuleDict(
        {
            "reid": torch.nn.Linear(3, 3),
            "teacher": torch.nn.Linear(3, 3),
            "conditioner": torch.nn.Linear(3, 3),
            "frozen": torch.nn.Linear(3, 3),
        }
    )
    model["frozen"].requires_grad_(False)
    o = OptimConfig(lr=1e-4, diffusion_lr_mult=10.0)
    opt = build_optimizer(model, o)
    groups = {g["name"]: g for g in opt.param_groups}
    assert len(groups["reid"]["params"]) == 2 and len(groups["diffusion"]["params"]) == 4
    assert all(g["weight_decay"] == o.weight_decay for g in opt.param_groups)
    set_epoch_lr(opt, 0, o)
    assert groups["reid"]["lr"] == pytest.approx(1.9e-5) and groups["diffusion"]["lr"] == pytest.approx(1.9e-4)
    set_epoch_lr(opt, 35, o)
    assert groups["reid"]["lr"] == pytest.approx(1e-5) and groups["diffusion"]["lr"] == pytest.approx(1e-4)
