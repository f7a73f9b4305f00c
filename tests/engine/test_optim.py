import pytest
import torch

from dcac.config import OptimConfig
from dcac.engine.optim import build_optimizer, lr_factor, set_epoch_lr


def test_schedule_matches_the_recipe():
    o = OptimConfig()
    factors = [lr_factor(e, o) for e in range(60)]
    assert factors[0] == pytest.approx(0.1)
    # linear from 0.1 to 1 over 10 epochs
    for e in range(10):
        assert factors[e] == pytest.approx(0.1 + 0.9 * e / 10)
    assert factors[10:30] == [1.0] * 20
    assert factors[30:50] == pytest.approx([0.1] * 20)
    assert factors[50:60] == pytest.approx([0.01] * 10)


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
    assert groups["reid"]["lr"] == pytest.approx(1e-5) and groups["diffusion"]["lr"] == pytest.approx(1e-4)
    set_epoch_lr(opt, 35, o)
    assert groups["reid"]["lr"] == pytest.approx(1e-5) and groups["diffusion"]["lr"] == pytest.approx(1e-4)
