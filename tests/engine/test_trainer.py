"""End-to-end training on the synthetic domains with tiny models: learning, exact resume, run folder."""

import json

import pytest
import torch

from dcac.config import load_config
from dcac.demo.synthetic import write_synthetic
from dcac.engine.trainer import train
from dcac.storage.checkpoint import load_tensors


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_synthetic(root, seed=0)
    return root


def _config(root, out, *extra):
    return load_config(
        "demo",
        [
            f"data.root={root}",
            f"train.output_dir={out}",
            "train.progress=false",
            "optim.epochs=3",
            "optim.warmup_epochs=1",
            "optim.milestones=[2]",
            "train.max_steps_per_epoch=3",
            "train.checkpoint_every=1",
            *extra,
        ],
    )


@pytest.mark.parametrize("augment_on", ["loader", "device"])
def test_resume_after_interruption_is_exact(synth_root, tmp_path, augment_on):
    extra = (f"data.augment_on={augment_on}", "data.erasing_p=0.5")  # every augmentation operation drawn
    straight = train(_config(synth_root, tmp_path / "straight", *extra))
    assert straight.epochs_done == 3
    first = train(_config(synth_root, tmp_path / "resumed", *extra), stop_after_epoch=1)
    assert first.epochs_done == 1
    resumed = train(_config(synth_root, tmp_path / "resumed", *extra))
    assert resumed.epochs_done == 3
    a = load_tensors(tmp_path / "straight" / "checkpoint" / "model.safetensors")
    b = load_tensors(tmp_path / "resumed" / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys() and any("lora_" in k for k in a) and any(k.startswith("conditioner.") for k in a)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert straight.metrics.keys() == resumed.metrics.keys() == {"synth_c"}
    assert straight.metrics["synth_c"]["mAP"] == resumed.metrics["synth_c"]["mAP"]


def test_run_folder_contents_and_resume_refuses_another_config(synth_root, tmp_path):
    out = tmp_path / "run"
    train(_config(synth_root, out, "optim.epochs=1"))
    names = {p.name for p in out.iterdir()}
    assert {
        "config.yaml",
        "run_info.json",
        "reid_model.safetensors",
        "checkpoint",
        "log.jsonl",
        "metrics.json",
    } <= names
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [l for l in lines if "loss" in l]
    assert steps and {"loss_id", "loss_pcl", "loss_diff", "acc", "lr", "epoch", "step"} <= steps[-1].keys()
    assert any(l.get("event") == "eval" for l in lines)
    with pytest.raises(ValueError, match="conditioning.temperature"):
        train(_config(synth_root, out, "optim.epochs=1", "conditioning.temperature=0.5"))


def test_official_compat_resume_restores_the_loss_scale(synth_root, tmp_path):
    """train.compat=official trains with a GradScaler; its scale and growth count resume with the checkpoint."""
    from dcac.engine.trainer import start_run

    out = tmp_path / "official"
    cfg = _config(synth_root, out, "train.compat=official", "conditioning.variant=none")
    train(cfg, stop_after_epoch=1)
    saved = json.loads((out / "checkpoint" / "trainer_state.json").read_text())["grad_scaler"]
    assert saved["_growth_tracker"] + (saved["scale"] != 2.0**16) > 0  # the scaler moved during epoch 1
    run = start_run(cfg, resume=True)
    assert run.epoch == 1
    assert run.scaler.state_dict() == saved
    run.logger.close()


def test_checkpoint_keeps_the_frozen_compat_biases():
    """train.compat=official's q/k/v biases are frozen and in no pre-trained file: a checkpoint must hold them."""
    from dcac.engine.resume import trainable_state
    from dcac.models.build import build_dcac

    official = trainable_state(build_dcac(load_config("demo", ["train.compat=official"]), num_ids=4))
    biases = [k for k in official if k.endswith("base_layer.bias") and ".attn" in k]
    assert biases and all(k.rsplit(".", 3)[-3] in ("to_q", "to_k", "to_v") for k in biases)
    clean = trainable_state(build_dcac(load_config("demo"), num_ids=4))
    assert not any(k.endswith("base_layer.bias") and ".attn" in k for k in clean)


def test_augmentation_on_the_device_is_the_loaders_augmentation(synth_root, tmp_path):
    """With the random operations fixed (flip always, no crop, no erasing) and no other randomness in the step
    (no teacher), a run augmenting on the device trains bit for bit as one augmenting in the loader; with the
    default operations the device run augments (its weights differ from the fixed-operation run's)."""
    fixed = ("conditioning.variant=none", "optim.epochs=1", "data.flip_p=1.0", "data.padding=0", "data.erasing_p=0")
    models = {}
    for name, extra in {
        "loader": fixed,
        "device": (*fixed, "data.augment_on=device"),
        "device_random": ("conditioning.variant=none", "optim.epochs=1", "data.augment_on=device"),
    }.items():
        train(_config(synth_root, tmp_path / name, *extra))
        models[name] = load_tensors(tmp_path / name / "reid_model.safetensors")
    for key in models["loader"]:
        torch.testing.assert_close(models["device"][key], models["loader"][key], rtol=0, atol=0, msg=key)
    assert any(not torch.equal(models["device_random"][k], models["device"][k]) for k in models["device"])


def test_a_checkpoint_whose_groups_lack_base_lr_resumes_exactly(synth_root, tmp_path):
    """dcac 0.1 saved Adam's groups without ``base_lr``/``name`` (the config sets them): such a run resumes."""
    straight = train(_config(synth_root, tmp_path / "straight"))
    train(_config(synth_root, tmp_path / "old"), stop_after_epoch=1)
    optimizer_file = tmp_path / "old" / "checkpoint" / "optimizer.pt"
    state = torch.load(optimizer_file, weights_only=True)
    for group in state["param_groups"]:
        del group["base_lr"], group["name"]
    torch.save(state, optimizer_file)
    resumed = train(_config(synth_root, tmp_path / "old"))
    assert resumed.epochs_done == 3
    a = load_tensors(tmp_path / "straight" / "checkpoint" / "model.safetensors")
    b = load_tensors(tmp_path / "old" / "checkpoint" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert straight.metrics["synth_c"]["mAP"] == resumed.metrics["synth_c"]["mAP"]
    saved = torch.load(optimizer_file, weights_only=True)["param_groups"]
    assert [g["name"] for g in saved] == ["reid", "diffusion"] and all(g["base_lr"] > 0 for g in saved)
