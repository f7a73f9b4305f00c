"""The demo: its classifier learns, its teacher is pre-trained on a world without the target, and its numbers
are aggregated honestly over seeds."""

import json
import math
import statistics

import numpy as np
import pytest
import torch

from dcac.config import load_config
from dcac.data.protocols import build_protocol
from dcac.demo.run import _aggregate, _std, format_summary, per_seed_csv, run_demo
from dcac.demo.synthetic import (
    BACKGROUND_KINDS,
    DOMAIN_STYLES,
    SCENE_CAPTION_SIZE,
    DomainStyle,
    identity_caption,
    render_world,
    sample_camera,
    sample_identity,
    scene_caption,
    world_styles,
    write_synthetic,
)
from dcac.demo.teacher import fold_latent_scale
from dcac.engine.resume import seed_everything
from dcac.engine.trainer import train
from dcac.evaluation.targets import evaluate_on_target
from dcac.inference.report import write_report
from dcac.inference.training_log import read_training_log
from dcac.models.build import build_reid_model
from dcac.models.diffusion_teacher import DiffusionTeacher, DiffusionTeacherConfig
from dcac.models.identity_information import identity_information


def test_short_dcac_run_improves_map_on_the_unseen_domain(tmp_path):
    write_synthetic(tmp_path / "data", seed=0)
    cfg = load_config(
        "demo",
        [
            f"data.root={tmp_path / 'data'}",
            f"train.output_dir={tmp_path / 'run'}",
            "train.progress=false",
            "optim.epochs=15",
            "optim.warmup_epochs=3",
            "optim.milestones=[13]",
            "train.checkpoint_every=15",
        ],
    )
    protocol = build_protocol(cfg.data.sources, cfg.data.targets, cfg.data.root)
    target = protocol.targets["synth_c"]
    seed_everything(cfg.train.seed)
    untrained = evaluate_on_target(build_reid_model(cfg, protocol.train.num_ids), target, cfg).metrics
    trained = train(cfg).metrics["synth_c"]
    assert trained["mAP"] > untrained["mAP"] + 5.0, (untrained["mAP"], trained["mAP"])
    assert trained["rank1"] > untrained["rank1"]
    assert torch.isfinite(torch.tensor(trained["mAP"]))


def test_the_world_never_draws_the_excluded_domains_look():
    styles = world_styles(40, seed=3, exclude=["synth_c"])
    assert len(styles) == 40 and all(s.background != DOMAIN_STYLES["synth_c"].background for s in styles)
    assert len({s.background for s in styles}) == 3  # every other kind does occur
    assert styles == world_styles(40, seed=3, exclude=["synth_c"])
    with pytest.raises(ValueError, match="background kind"):
        world_styles(2, seed=0, exclude=list(DOMAIN_STYLES))  # every background kind excluded


def test_world_images_come_with_their_persons_and_scenes_captions():
    styles = world_styles(2, seed=0)
    images, persons, scenes = render_world(styles, seed=0, ids_per_domain=3, images_per_id=2, height=32, width=16)
    assert len(images) == 12 and persons.shape == (12, 26) and images[0].size == (16, 32)
    assert scenes.shape == (12, SCENE_CAPTION_SIZE)
    assert (persons[0] == persons[1]).all() and not (persons[0] == persons[2]).all()  # 2 takes per person
    assert not (scenes[0] == scenes[1]).all()  # each take has its own background
    assert scenes[0, BACKGROUND_KINDS.index(styles[0].background)] == 1.0 and scenes[0, :4].sum() == 1.0
    identity = sample_identity(np.random.default_rng(5))
    caption = identity_caption(identity)
    assert tuple(caption[:3]) == pytest.approx(identity.upper) and caption[6 + identity.pattern] == 1.0


def test_the_scene_caption_against_hand_computed_values():
    style = DomainStyle("market", 3, "bands", (1.2, 1.0, 0.5), 0.5, True, 0.4, 0.02, 100)
    camera = sample_camera(np.random.default_rng(0))
    background = np.zeros((8, 4, 3))
    background[:2, :2] = 0.9  # the grid's top-left cell bright, the rest black
    scene = scene_caption(style, camera, background)
    assert scene.shape == (SCENE_CAPTION_SIZE,) and tuple(scene[:4]) == (0.0, 1.0, 0.0, 0.0)

    def shown(value):  # contrast 0.5 around mid-grey, then the cast and the camera's brightness
        return np.clip(((value - 0.5) * 0.5 + 0.5) * np.array([1.2, 1.0, 0.5]) * camera.brightness, 0.0, 1.0)

    grid = scene[4:28].reshape(4, 2, 3)
    assert grid[0, 0] == pytest.approx(shown(0.9)) and grid[3, 1] == pytest.approx(shown(0.0))
    assert tuple(scene[28:31]) == pytest.approx((1.0, 0.4, 0.2))
    assert tuple(scene[31:]) == pytest.approx((camera.scale, 10 * camera.shift, float(camera.mirrored)))


def test_identity_information_against_hand_computed_values():
    uniform = torch.full((3, 8), 1 / 8)
    info = identity_information(uniform, torch.tensor([0, 3, 7]))
    assert float(info["p_entropy"]) == pytest.approx(math.log(8)) and float(info["p_true"]) == pytest.approx(1 / 8)
    p = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    info = identity_information(p, torch.tensor([1, 0]))
    assert float(info["p_entropy"]) == pytest.approx(math.log(2) / 2) and float(info["p_true"]) == pytest.approx(0.25)


def test_folding_the_latent_scale_keeps_decoding_and_gives_unit_variance_latents():
    teacher = DiffusionTeacher(DiffusionTeacherConfig(preset="tiny", image_size=32))
    images = torch.rand(64, 3, 32, 32) * 2 - 1
    before_mean, _ = teacher.encode_posterior(images)
    decoded_before = teacher.vae.decode(before_mean).sample
    k = fold_latent_scale(teacher.vae, images)
    mean, std = teacher.encode_posterior(images)
    assert torch.allclose(mean, k * before_mean, atol=1e-5)
    assert torch.allclose(teacher.vae.decode(mean).sample, decoded_before, atol=1e-4)
    assert float(teacher.sample_latents(mean, std).std()) == pytest.approx(1.0, abs=0.1)


def test_epoch_means_in_the_log_are_the_means_of_the_steps_and_reach_the_report(tmp_path):
    write_synthetic(tmp_path / "data", seed=0, num_train_ids=8, num_test_ids=4, images_per_id=4)
    cfg = load_config(
        "demo",
        [
            f"data.root={tmp_path / 'data'}",
            f"train.output_dir={tmp_path / 'run'}",
            "train.progress=false",
            "optim.epochs=1",
            "train.log_every=1",
            "data.batch_size=8",
        ],
    )
    train(cfg, resume=False)
    log = read_training_log(tmp_path / "run" / "log.jsonl")
    steps = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in steps if "step" in r and "event" not in r]
    (epoch,) = log.epoch_means
    for key in ("p_entropy", "p_true", "loss_diff", "acc"):
        assert epoch[key] == pytest.approx(statistics.fmean(r[key] for r in steps))
    assert 0 < epoch["p_entropy"] <= math.log(16) + 1e-6 and 0 < epoch["p_true"] <= 1
    html = write_report(tmp_path / "run", {}).read_text()
    assert (
        "Identity information in the condition" in html
        and (tmp_path / "run" / "plots" / "identity_information.png").is_file()
    )


def _fake_seed(seed, dcac_map):
    arm = {
        "mAP": dcac_map,
        "rank1": 1.0,
        "rank5": 2.0,
        "seconds": 3.0,
        "train_acc": 50.0,
        "p_entropy": 1.0,
        "p_true": 0.5,
        "loss_diff": 0.4,
    }
    return {
        "seed": seed,
        "num_ids": 96,
        "target": "synth_c",
        "chance": {"mAP": 3.0, "rank1": 2.0, "rank5": 9.0},
        "untrained": {"mAP": 4.0, "rank1": 3.0, "rank5": 8.0},
        "baseline": {k: v for k, v in arm.items() if k != "loss_diff"},
        "dcac": arm,
    }


def test_mean_and_std_over_seeds_and_the_printed_table():
    per_seed = [_fake_seed(0, 10.0), _fake_seed(1, 14.0), _fake_seed(2, 18.0)]
    summary = {
        "seeds": [0, 1, 2],
        "arms": ["baseline", "dcac"],
        "per_seed": per_seed,
        "mean": _aggregate(per_seed, statistics.fmean),
        "std": _aggregate(per_seed, _std),
    }
    assert summary["mean"]["dcac"]["mAP"] == 14.0 and summary["std"]["dcac"]["mAP"] == pytest.approx(4.0)
    text = format_summary(summary)
    assert "14.0 ± 4.0" in text and "ln 96 = 4.56" in text and "dcac 0.400" in text
    assert _std([5.0]) is None
    csv_lines = per_seed_csv(per_seed).splitlines()
    assert len(csv_lines) == 1 + 3 * 4 and csv_lines[0].startswith("seed,arm,mAP")


@pytest.mark.slow
def test_demo_over_two_seeds_writes_every_seeds_numbers(tmp_path):
    summary = run_demo(tmp_path, epochs=1, seeds=2)
    assert [s["seed"] for s in summary["per_seed"]] == [0, 1]
    assert (tmp_path / "dcac" / "report.html").is_file() and (
        tmp_path / "seed_1" / "baseline" / "report.html"
    ).is_file()
    saved = json.loads((tmp_path / "demo_results.json").read_text())
    maps = [s["dcac"]["mAP"] for s in saved["per_seed"]]
    assert saved["mean"]["dcac"]["mAP"] == pytest.approx(statistics.fmean(maps))
    assert saved["std"]["dcac"]["mAP"] == pytest.approx(statistics.stdev(maps))
    assert 0.0 <= saved["per_seed"][0]["dcac"]["train_acc"] <= 100.0
    assert saved["paired"]["dcac"]["mAP"]["differences"] == pytest.approx(
        [s["dcac"]["mAP"] - s["baseline"]["mAP"] for s in saved["per_seed"]]
    )
    assert saved["environment"]["torch"] == torch.__version__ and "cond_gain" in saved["per_seed"][1]["dcac"]
    assert "Paired by seed" in (tmp_path / "comparison.html").read_text()
