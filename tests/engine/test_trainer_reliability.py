"""Training never loses finished work: bad targets fail before training, saving comes before evaluation,
the deliverable is repaired from the checkpoint, and a resumed run's log holds each step once."""

import json
import shutil

import pytest
import torch

import dcac.engine.trainer
import dcac.evaluation.targets
from dcac.config import load_config
from dcac.data.errors import CorruptImageError
from dcac.demo.synthetic import write_synthetic
from dcac.engine.trainer import train
from dcac.storage.checkpoint import load_tensors


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_synthetic(root, seed=0)
    return root


@pytest.fixture
def own_data(synth_root, tmp_path):
    """A copy of the synthetic data that a test may damage."""
    return shutil.copytree(synth_root, tmp_path / "data")


def _config(root, out, *extra):
    return load_config(
        "demo",
        [
            f"data.root={root}",
            f"train.output_dir={out}",
            "train.progress=false",
            "optim.epochs=2",
            "optim.warmup_epochs=1",
            "optim.milestones=[1]",
            "train.max_steps_per_epoch=2",
            *extra,
        ],
    )


def _steps_logged(run_dir):
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [line["step"] for line in lines if "step" in line and "event" not in line]


def test_an_unreadable_target_image_stops_the_run_before_training(own_data, tmp_path):
    bad = [
        p for p in sorted((own_data / "synth_c" / "bounding_box_test").glob("*.jpg")) if not p.name.startswith("0000_")
    ][0]
    bad.write_bytes(b"")
    out = tmp_path / "run"
    with pytest.raises(CorruptImageError, match=bad.name):
        train(_config(own_data, out))
    assert not (out / "checkpoint").exists() and not (out / "log.jsonl").exists()


def test_on_corrupt_skip_skips_and_counts_unreadable_target_images(own_data, tmp_path, capsys):
    for bad in sorted((own_data / "synth_c" / "query").glob("*.jpg"))[:2]:
        bad.write_bytes(b"not a jpeg")
    out = tmp_path / "run"
    result = train(_config(own_data, out, "data.on_corrupt=skip", "optim.epochs=1"))
    assert "skipped 2 unreadable images of target synth_c" in capsys.readouterr().out
    queries = len(list((own_data / "synth_c" / "query").glob("*.jpg")))
    assert result.metrics["synth_c"]["num_valid_queries"] == queries - 2
    assert (out / "reid_model.safetensors").is_file()


def test_a_target_without_a_valid_query_stops_the_run_before_training(own_data, tmp_path):
    for image in (own_data / "synth_c" / "bounding_box_test").glob("*.jpg"):
        if not image.name.startswith("0000_"):  # keep only the distractors: no query has a match
            image.unlink()
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="target 'synth_c'.*cannot be evaluated"):
        train(_config(own_data, out))
    assert not (out / "checkpoint").exists()


def test_a_failing_final_evaluation_keeps_the_trained_model_and_a_rerun_evaluates(synth_root, tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = _config(synth_root, out, "train.checkpoint_every=5")  # as the demo preset: no checkpoint before the end

    def failing_evaluation(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(dcac.engine.trainer, "evaluate_on_target", failing_evaluation)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        train(cfg)
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["epoch"] == 2
    assert load_tensors(out / "reid_model.safetensors")
    assert not (out / "metrics.json").exists()

    monkeypatch.setattr(dcac.engine.trainer, "evaluate_on_target", dcac.evaluation.targets.evaluate_on_target)
    result = train(cfg)
    assert result.epochs_done == 2 and result.metrics.keys() == {"synth_c"}
    assert json.loads((out / "metrics.json").read_text())["epoch"] == 2
    assert train(cfg).metrics == {}  # evaluated once: a third run has nothing left to do


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_rerunning_a_finished_run_restores_its_reid_model_from_the_checkpoint(synth_root, tmp_path, damage, capsys):
    out = tmp_path / "run"
    cfg = _config(synth_root, out, "optim.epochs=1")
    train(cfg)
    weights = out / "reid_model.safetensors"
    saved = {k: v.clone() for k, v in load_tensors(weights).items()}  # not backed by the file damaged below
    if damage == "deleted":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:100])
    train(cfg)
    assert f"restored {weights}" in capsys.readouterr().out
    restored = load_tensors(weights)
    checkpoint = load_tensors(out / "checkpoint" / "model.safetensors")
    assert restored.keys() == saved.keys()
    for key, tensor in saved.items():
        torch.testing.assert_close(restored[key], tensor, rtol=0, atol=0, msg=key)
        torch.testing.assert_close(checkpoint[f"reid.{key}"], tensor, rtol=0, atol=0, msg=key)


def test_a_resumed_run_logs_each_step_once(synth_root, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(_config(synth_root, straight))
    train(_config(synth_root, resumed), stop_after_epoch=1)
    epoch_one = tmp_path / "epoch_one"
    shutil.copytree(resumed / "checkpoint", epoch_one)
    train(_config(synth_root, resumed))
    # An interruption after epoch 2's steps but before its checkpoint: the checkpoint is still epoch 1's.
    shutil.rmtree(resumed / "checkpoint")
    shutil.copytree(epoch_one, resumed / "checkpoint")
    train(_config(synth_root, resumed))
    steps = _steps_logged(straight)
    assert steps == sorted(set(steps)) and steps[-1] == 4  # 2 epochs x 2 steps
    assert _steps_logged(resumed) == steps
