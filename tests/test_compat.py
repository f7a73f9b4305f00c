"""train.compat=official: each behaviour of the official code it turns on, checked on tiny models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from PIL import Image
from scipy import stats

from dcac.config import load_config
from dcac.config.compat import eval_interpolation
from dcac.data.transforms import MEAN_STD_HALF, build_test_transform
from dcac.engine.optim import build_optimizer
from dcac.engine.train_step import train_step
from dcac.models.build import build_dcac
from dcac.models.lora import QKV_PROJECTIONS, add_frozen_qkv_biases, add_unet_lora

NUM_IDS = 4
OFFICIAL = ["train.compat=official"]


def _model(*overrides: str, seed: int = 0):
    cfg = load_config("demo", list(overrides))
    torch.manual_seed(seed)
    model = build_dcac(cfg, NUM_IDS)
    dim = model.memory.dim
    model.memory.rebuild(F.normalize(torch.randn(NUM_IDS, dim), dim=1), torch.arange(NUM_IDS))
    return cfg, model


def _batch(cfg, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    size = cfg.data.diffusion_size
    return {
        "image": torch.randn(8, 3, cfg.data.height, cfg.data.width, generator=g),
        "pid": torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]),
        "diffusion_image": torch.rand(8, 3, size, size, generator=g) * 2 - 1,
    }


def _qkv_biases(model) -> dict[str, torch.nn.Parameter]:
    return {
        n: p
        for n, p in model.named_parameters()
        if n.endswith("base_layer.bias") and QKV_PROJECTIONS.fullmatch(n[: -len(".base_layer.bias")])
    }


def test_official_sets_fp16_and_per_step_vae_and_the_default_stays_clean():
    official, clean = load_config("demo", OFFICIAL), load_config("demo")
    assert (official.train.mixed_precision, official.diffusion.cache_latents) == ("fp16", False)
    assert clean.train.compat == "none" and clean.diffusion.cache_latents
    with pytest.raises(ValueError, match="train.compat='legacy' is not one of none, official"):
        load_config("demo", ["train.compat=legacy"])


@pytest.mark.parametrize("compat,momentum", [("none", 0.1), ("official", 0.19)])
def test_bnneck_running_stats_after_one_step(compat, momentum):
    cfg, model = _model(f"train.compat={compat}")
    batch = _batch(cfg)
    bn = model.reid.bottleneck
    mean0, var0 = bn.running_mean.clone(), bn.running_var.clone()
    with torch.no_grad():
        feat = model.reid.encoder(batch["image"])  # the ViT has no train-mode behaviour: the step's f
    model.train()
    latents = model.teacher.sample_latents(*model.teacher.encode_posterior(batch["diffusion_image"]))
    model(batch["image"], batch["pid"], latents)
    # Two updates with momentum 0.1 on the same batch: r <- 0.81 r + 0.19 s (1 - 0.9^2 = 0.19).
    torch.testing.assert_close(bn.running_mean, (1 - momentum) * mean0 + momentum * feat.mean(0))
    torch.testing.assert_close(bn.running_var, (1 - momentum) * var0 + momentum * feat.var(0, unbiased=True))
    assert int(bn.num_batches_tracked) == (2 if compat == "official" else 1)


def test_bnneck_twice_leaves_the_losses_unchanged():
    cfg, clean = _model()
    _, official = _model(*OFFICIAL)
    official.memory.logits_dtype = torch.float32  # isolate the BNNeck part
    batch = _batch(cfg)
    for model in (clean, official):
        model.train()
    latents = clean.teacher.sample_latents(*clean.teacher.encode_posterior(batch["diffusion_image"]))
    torch.manual_seed(3)
    a = clean(batch["image"], batch["pid"], latents)
    torch.manual_seed(3)
    # The official teacher has its biases, so compare the Re-ID terms (and the memory's input) only.
    b = official(batch["image"], batch["pid"], latents)
    torch.testing.assert_close(a.parts["loss_id"], b.parts["loss_id"], rtol=0, atol=0)
    torch.testing.assert_close(a.parts["loss_pcl"], b.parts["loss_pcl"], rtol=0, atol=0)
    torch.testing.assert_close(a.embeddings, b.embeddings, rtol=0, atol=0)


def test_qkv_biases_present_frozen_in_the_state_dict_and_seed_determined():
    _, model = _model(*OFFICIAL, "train.seed=7")
    biases = _qkv_biases(model)
    blocks = {n.split(".attn")[0] for n in biases}
    assert len(biases) == 6 * len(blocks) > 0  # to_q, to_k, to_v of attn1 and attn2 in every block
    assert all(not p.requires_grad for p in biases.values())
    assert all(f"{n}" in model.state_dict() for n in biases)
    grouped = {id(p) for g in build_optimizer(model, load_config("demo").optim).param_groups for p in g["params"]}
    assert not grouped & {id(p) for p in biases.values()}
    _, same = _model(*OFFICIAL, "train.seed=7", seed=1)  # another global RNG state: same biases
    _, other = _model(*OFFICIAL, "train.seed=8")
    for name, p in biases.items():
        assert torch.equal(p, _qkv_biases(same)[name]), name
    assert not any(torch.equal(p, _qkv_biases(other)[n]) for n, p in biases.items())
    _, clean = _model()
    assert not _qkv_biases(clean)
    assert all(
        m.bias is None
        for n, m in clean.teacher.unet.named_modules()
        if n.endswith(("to_q.base_layer", "to_k.base_layer", "to_v.base_layer"))
    )


def test_qkv_biases_follow_nn_linear_default_bias_distribution():
    """U(-1/sqrt(in), 1/sqrt(in)) per layer: bounded, and uniform by a Kolmogorov-Smirnov test."""
    _, model = _model(*OFFICIAL)
    scaled = []
    for name, bias in _qkv_biases(model).items():
        layer = model.get_submodule(name[: -len(".bias")])
        bound = 1 / math.sqrt(layer.in_features)
        assert bias.abs().max() <= bound, name
        scaled.append(bias.detach().float() / bound)
    scaled = torch.cat(scaled)
    assert stats.kstest(scaled.numpy(), stats.uniform(loc=-1, scale=2).cdf).pvalue > 1e-3


def test_sd15_gets_96_biased_projections_under_peft_naming():
    from diffusers import UNet2DConditionModel

    from dcac.models.sd_configs import preset_configs

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(preset_configs("sd15")[0])
    assert add_frozen_qkv_biases(unet, torch.Generator().manual_seed(0)) == 96
    add_unet_lora(unet, rank=8)
    keys = [
        k
        for k in unet.state_dict()
        if k.endswith(".base_layer.bias") and QKV_PROJECTIONS.fullmatch(k[: -len(".base_layer.bias")])
    ]
    assert len(keys) == 96
    assert "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.base_layer.bias" in keys


def test_qkv_biases_change_the_teachers_prediction():
    cfg, clean = _model()
    _, official = _model(*OFFICIAL)
    official.teacher.load_state_dict(clean.teacher.state_dict(), strict=False)  # same weights, plus biases
    g = torch.Generator().manual_seed(2)
    size = cfg.data.diffusion_size // 8
    latents = torch.randn(2, 4, size, size, generator=g)
    context = torch.randn(2, clean.teacher.cross_attention_dim, generator=g)
    t = torch.tensor([10, 500])
    with torch.no_grad():
        a = clean.teacher.unet(latents, t, encoder_hidden_states=context[:, None]).sample
        b = official.teacher.unet(latents, t, encoder_hidden_states=context[:, None]).sample
    assert not torch.allclose(a, b)


def test_eval_resize_is_bilinear_only_for_official_single_source_runs():
    single = ["data.sources=[market1501]"]
    multi = ["data.sources=[market1501,dukemtmcreid]"]
    assert eval_interpolation(load_config("demo", single)) == "bicubic"
    assert eval_interpolation(load_config("demo", OFFICIAL + single)) == "bilinear"
    assert eval_interpolation(load_config("demo", OFFICIAL + multi)) == "bicubic"
    image = Image.fromarray(torch.randint(0, 256, (37, 23, 3), dtype=torch.uint8).numpy())
    for name, pil_filter in (("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC)):
        resized = torch.tensor(np.array(image.resize((16, 32), pil_filter)), dtype=torch.float32)
        expected = (resized.permute(2, 0, 1) / 255 - MEAN_STD_HALF[0]) / MEAN_STD_HALF[0]
        got = build_test_transform(32, 16, interpolation=name)(image)
        torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="interpolation"):
        build_test_transform(32, 16, interpolation="nearest")


def test_official_memory_logits_are_float16_and_the_vae_runs_under_autocast():
    cfg, model = _model(*OFFICIAL)
    assert model.memory.logits_dtype == torch.float16
    views = _batch(cfg)["diffusion_image"]
    with torch.autocast("cpu", dtype=torch.float16):
        mean, _ = model.teacher.encode_posterior(views)
        clean_mean, _ = _model()[1].teacher.encode_posterior(views)
    assert mean.dtype == torch.float16 and clean_mean.dtype == torch.float32


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))],
)
def test_grad_scaler_step_runs_and_skips_an_inf_step(device):
    cfg, model = _model(*OFFICIAL)
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision="no")
    optimizer = build_optimizer(model, cfg.optim, fused=device == "cuda")  # the trainer's fused Adam on CUDA
    model, optimizer = accelerator.prepare(model, optimizer)
    scaler = torch.amp.GradScaler(device, init_scale=2.0**8)
    before = _trainable(model)
    parts = train_step(model, optimizer, accelerator, _batch(cfg), scaler=scaler)
    assert all(math.isfinite(v) for v in parts.values())
    after = _trainable(model)
    assert scaler.get_scale() == 2.0**8  # not skipped
    assert any(not torch.equal(before[n], after[n]) for n in before)

    # A loss weight so large that the float16 gradients overflow: the step must be skipped, the scale halved.
    model.losses.id_weight = 1e35
    memory_before = model.memory.features.clone()
    train_step(model, optimizer, accelerator, _batch(cfg, seed=2), scaler=scaler)
    assert scaler.get_scale() == 2.0**7
    for name, value in _trainable(model).items():
        assert torch.equal(value, after[name]), name
    assert not torch.equal(model.memory.features, memory_before)  # the memory moves, as in the official code


@pytest.mark.slow
def test_an_official_single_source_run_trains_and_evaluates_end_to_end(tmp_path):
    from dcac.demo.synthetic import write_synthetic
    from dcac.engine.trainer import train

    write_synthetic(tmp_path / "data", seed=0)
    cfg = load_config(
        "demo",
        [
            *OFFICIAL,
            "data.sources=[synth_a]",
            f"data.root={tmp_path / 'data'}",
            f"train.output_dir={tmp_path / 'run'}",
            "train.progress=false",
            "optim.epochs=1",
            "train.max_steps_per_epoch=2",
        ],
    )
    result = train(cfg)
    assert result.epochs_done == 1 and math.isfinite(result.metrics["synth_c"]["mAP"])
