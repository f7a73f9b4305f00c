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


def test_groups_come_from_the_model_with_the_lr_multiplier():
    from dcac.config import load_config
    from dcac.models.build import build_dcac

    cfg = load_config("demo", ["conditioning.variant=instance"])
    torch.manual_seed(0)
    model = build_dcac(cfg, num_ids=4)
    o = OptimConfig(lr=1e-4, diffusion_lr_mult=10.0)
    opt = build_optimizer(model, o)
    groups = {g["name"]: g for g in opt.param_groups}
    trainable = lambda module: [p for p in module.parameters() if p.requires_grad]  # noqa: E731
    assert groups["reid"]["params"] == trainable(model.reid)
    assert groups["diffusion"]["params"] == trainable(model.teacher) + [model.conditioner.projection]
    assert all(p.requires_grad for g in opt.param_groups for p in g["params"])
    assert all(g["weight_decay"] == o.weight_decay for g in opt.param_groups)
    set_epoch_lr(opt, 0, o)
    assert groups["reid"]["lr"] == pytest.approx(1.9e-5) and groups["diffusion"]["lr"] == pytest.approx(1.9e-4)
    set_epoch_lr(opt, 35, o)
    assert groups["reid"]["lr"] == pytest.approx(1e-5) and groups["diffusion"]["lr"] == pytest.approx(1e-4)


def test_baseline_has_one_group():
    from dcac.config import load_config
    from dcac.models.build import build_dcac

    model = build_dcac(load_config("demo", ["conditioning.variant=none"]), num_ids=4)
    assert [g["name"] for g in model.parameter_groups(1e-4, 10.0)] == ["reid"]
