"""The demo's mechanism measurements, its paired verdict and its shipped pre-trained teacher."""

import json
import math
import statistics
from dataclasses import asdict, replace

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from dcac.config import load_config
from dcac.demo.teacher import (
    SHIPPED_TEACHER,
    TEACHER_INFO,
    TeacherPretraining,
    condition_gain,
    condition_losses,
    lr_factor,
    pretrain,
    timestep_profile,
)
from dcac.demo.verdict import paired_difference, t_quantile, verdict
from dcac.inference.report import write_report
from dcac.inference.training_log import read_training_log
from dcac.models.build import build_dcac, build_teacher
from dcac.models.diffusion_teacher import DiffusionTeacher, DiffusionTeacherConfig
from dcac.models.mechanism import mechanism_measurements
from dcac.models.sd_configs import tiny_unet_config

TINY_PRETRAINING = replace(
    TeacherPretraining(),
    num_domains=2,
    ids_per_domain=3,
    images_per_id=2,
    vae_steps=2,
    vae_batch=4,
    unet_steps=2,
    unet_batch=4,
    held_out_images=4,
)


@pytest.mark.parametrize("dof", [1, 2, 4, 9, 30])
def test_t_quantile_matches_scipy(dof):
    assert t_quantile(0.975, dof) == pytest.approx(stats.t.ppf(0.975, dof), rel=1e-6)


def _seeds(baseline_maps, dcac_maps):
    return [
        {"baseline": {"mAP": b, "rank1": 0.0}, "dcac": {"mAP": d, "rank1": 0.0}}
        for b, d in zip(baseline_maps, dcac_maps)
    ]


def test_paired_difference_is_the_t_interval_of_the_per_seed_differences():
    per_seed = _seeds([40.0, 50.0, 45.0, 60.0, 55.0], [42.0, 51.0, 48.0, 61.0, 54.5])
    differences = [2.0, 1.0, 3.0, 1.0, -0.5]
    result = paired_difference(per_seed, "dcac", "mAP")
    low, high = stats.t.interval(
        0.95, len(differences) - 1, loc=statistics.fmean(differences), scale=stats.sem(differences)
    )
    assert result["differences"] == differences and result["mean"] == pytest.approx(1.3)
    assert (result["low"], result["high"]) == (pytest.approx(low, rel=1e-6), pytest.approx(high, rel=1e-6))
    assert verdict(result) == "DCAC not distinguishable from the Baseline at 5 seeds"
    ahead = paired_difference(_seeds([40.0, 50.0, 45.0], [42.0, 52.5, 47.0]), "dcac", "mAP")
    assert verdict(ahead) == "DCAC ahead of the Baseline at 3 seeds"
    behind = paired_difference(_seeds([40.0, 50.0, 45.0], [38.0, 47.5, 43.0]), "dcac", "mAP")
    assert verdict(behind) == "DCAC behind the Baseline at 3 seeds"
    single = paired_difference(_seeds([40.0], [48.0]), "dcac", "mAP")
    assert single["low"] is None and verdict(single).startswith("one seed cannot decide")


def _tiny_dcac(variant="correlation", num_ids=6):
    cfg = load_config("demo", [f"conditioning.variant={variant}", "conditioning.temperature=0.7"])
    torch.manual_seed(0)
    model = build_dcac(cfg, num_ids)
    with torch.no_grad():  # a classifier that already prefers some identities: p is not uniform
        model.reid.classifier.weight.mul_(20.0)
    return cfg, model


def test_mechanism_measurements_against_a_brute_force_computation():
    cfg, model = _tiny_dcac()
    images, labels = torch.randn(5, 3, 64, 32), torch.tensor([0, 1, 2, 3, 5])
    latents = torch.randn(5, 4, 8, 8)
    values = mechanism_measurements(model, images, labels, latents, seed=3, draws=2)
    assert model.training  # left as found
    model.eval()
    with torch.no_grad():
        out = model.reid(images)
    tau, prompts = cfg.conditioning.temperature, model.conditioner.prompts.detach()
    p = torch.softmax(out.logits / tau, dim=1)
    # The same draws, taken from the seed as the measurement does; the gradient with respect to the context
    # by autograd, then into z through softmax's Jacobian by hand: dL/dz = (p * (g - p.g)) / tau with g = P dL/dc.
    context = (p @ prompts).requires_grad_(True)
    generator = torch.Generator().manual_seed(3)
    loss, null = 0.0, 0.0
    for _ in range(2):
        t = torch.randint(model.teacher.config.num_train_timesteps, (5,), generator=generator)
        noise = torch.randn(latents.shape, generator=generator)
        loss = loss + model.teacher.loss(latents, context, timesteps=t, noise=noise) / 2
        null += float(model.teacher.loss(latents, torch.zeros_like(context), timesteps=t, noise=noise).detach()) / 2
    (grad_context,) = torch.autograd.grad(loss * cfg.loss.diffusion_weight, context)
    g = grad_context @ prompts.T
    grad_z = p * (g - (p * g).sum(dim=1, keepdim=True)) / tau
    z = out.logits.clone().requires_grad_(True)
    (grad_id,) = torch.autograd.grad(cfg.loss.id_weight * F.cross_entropy(z, labels, label_smoothing=0.1), z)
    towards = F.one_hot(labels, 6).float() - p
    cosines = [float(torch.dot(-grad_z[i], towards[i]) / (grad_z[i].norm() * towards[i].norm())) for i in range(5)]
    assert values["loss_diff"] == pytest.approx(float(loss.detach()), rel=1e-5)
    assert values["cond_gain"] == pytest.approx(1 - float(loss.detach()) / null, abs=1e-6)
    assert values["grad_ratio"] == pytest.approx(float(grad_z.norm() / grad_id.norm()), rel=1e-3)
    assert values["grad_cosine"] == pytest.approx(statistics.fmean(cosines), abs=1e-4)
    assert values["p_true"] == pytest.approx(float(p[torch.arange(5), labels].mean()), rel=1e-5)


def test_mechanism_without_a_path_into_z_reports_no_push_and_the_baseline_only_identity_information():
    _, hard = _tiny_dcac("hard")
    values = mechanism_measurements(hard, torch.randn(4, 3, 64, 32), torch.arange(4), torch.randn(4, 4, 8, 8), seed=0)
    assert values["grad_ratio"] == 0.0 and "grad_cosine" not in values and "cond_gain" in values
    _, baseline = _tiny_dcac("none")
    values = mechanism_measurements(baseline, torch.randn(4, 3, 64, 32), torch.arange(4), None, seed=0)
    assert set(values) == {"p_entropy", "p_true"}


def _train_on_conditioned_latents(teacher, contexts, latents, steps):
    optimizer = torch.optim.Adam(teacher.trainable_parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        loss = teacher.loss(latents, contexts, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_the_condition_gain_tells_a_condition_using_unet_from_a_condition_blind_one():
    # Per image a random latent, constant over its 4 x 4 positions, that the condition states: a UNet reading the
    # condition needs not infer it from the noisy latent. Fewer norm groups than channels, as the shipped teacher.
    values = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    latents = values[:, :, None, None].expand(32, 4, 4, 4).contiguous()
    contexts = torch.cat([values, torch.zeros(32, 28)], dim=1)
    gains, profiles = {}, {}
    for blind in (False, True):
        torch.manual_seed(0)
        unet_config = tiny_unet_config() | {"norm_num_groups": 8}
        teacher = DiffusionTeacher(DiffusionTeacherConfig(mode="full", image_size=32, unet_config=unet_config))
        if blind:  # cross-attention outputs fixed at zero: the context cannot reach the prediction
            for name, module in teacher.unet.named_modules():
                if name.endswith("attn2.to_out.0"):
                    module.weight.data.zero_(), module.bias.data.zero_()
                    module.requires_grad_(False)
        _train_on_conditioned_latents(teacher, contexts, latents, steps=50)
        posterior_mean = latents / teacher.latent_scale  # condition_losses scales posterior samples as training does
        null = torch.zeros_like(contexts)
        losses = condition_losses(
            teacher, posterior_mean, torch.zeros_like(latents), {"with": contexts, "null": null}, seed=1
        )
        gains[blind] = condition_gain(losses["with"], losses["null"])
        profiles[blind] = timestep_profile(
            teacher, posterior_mean, torch.zeros_like(latents), {"with": contexts, "null": null}, seed=1
        )
    assert gains[False] > 0.1, gains
    assert abs(gains[True]) < 1e-6, gains
    assert profiles[True]["with"] == profiles[True]["null"] and len(profiles[False]["with"]) == 10
    assert sum(profiles[False]["with"]) < sum(profiles[False]["null"])


def test_pretraining_writes_a_folder_the_weights_path_loads_with_its_measurements(tmp_path):
    info = pretrain(tmp_path / "teacher", TINY_PRETRAINING)
    saved = json.loads((tmp_path / "teacher" / TEACHER_INFO).read_text())
    assert saved == json.loads(json.dumps(info)) and saved["world_images"] == 12
    contexts = {"with_caption", "null_caption", "wrong_caption", "wrong_person_right_scene"}
    assert set(saved["held_out_diffusion_loss"]) == contexts == set(saved["loss_per_timestep_tenth"])
    teacher = build_teacher(load_config("demo", [f"diffusion.weights={tmp_path / 'teacher'}"]))
    assert teacher.cross_attention_dim == 32 and not math.isnan(saved["caption_gain"])


def test_the_unet_learning_rate_warms_up_then_decays_to_zero():
    settings = replace(TeacherPretraining(), unet_steps=110, lr_warmup=10, lr_decay=True)
    factors = [lr_factor(step, settings=settings) for step in (0, 9, 10, 60, 110)]
    assert factors == pytest.approx([0.1, 1.0, 1.0, 0.5, 0.0])
    assert lr_factor(60, settings=replace(settings, lr_decay=False)) == 1.0


def _shipped_info():
    return json.loads((SHIPPED_TEACHER / TEACHER_INFO).read_text())


def test_the_shipped_teacher_is_the_scripts_and_loads_through_the_weights_path():
    info = _shipped_info()
    assert info["settings"] == json.loads(json.dumps(asdict(TeacherPretraining())))
    losses = info["held_out_diffusion_loss"]
    assert info["caption_gain"] == pytest.approx(condition_gain(losses["with_caption"], losses["null_caption"]))
    assert losses["wrong_caption"] > losses["with_caption"]  # a wrong person's caption is worse than the right one
    assert losses["wrong_person_right_scene"] > losses["with_caption"]  # the person part of the caption is heard
    reconstruction = info["held_out_reconstruction"]
    assert reconstruction["mse"] < 0.6 * reconstruction["variance"]  # better than answering the mean image
    teacher = build_teacher(load_config("demo", [f"diffusion.weights={SHIPPED_TEACHER}"]))
    mean, _ = teacher.encode_posterior(torch.zeros(1, 3, 64, 64))
    assert mean.shape == (1, 4, 8, 8) and teacher.cross_attention_dim == 32


def test_the_shipped_teacher_meets_the_caption_gain_asked_for():
    assert _shipped_info()["caption_gain"] >= 0.10


def test_mechanism_lines_of_the_log_reach_the_run_report(tmp_path):
    lines = [
        {"epoch": 1, "step": 1, "loss": 1.0},
        {"event": "mechanism", "epoch": 1, "cond_gain": 0.125, "grad_ratio": 0.03, "time": 5.0},
        "torn",
    ]
    (tmp_path / "log.jsonl").write_text("\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines))
    log = read_training_log(tmp_path / "log.jsonl")
    assert log.mechanism == [{"epoch": 1, "cond_gain": 0.125, "grad_ratio": 0.03}] and log.skipped_lines == 1
    html = write_report(tmp_path, {}).read_text()
    assert "push on the logits" in html and "<td>0.12</td>" in html and "grad_ratio" in html
