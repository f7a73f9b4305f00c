"""The method's point: the diffusion loss reaches the Re-ID encoder through the conditioning (docs/method.md §4)."""

import pytest
import torch

from dcac.config import load_config
from dcac.models.build import build_dcac

NUM_IDS = 6


def _diffusion_only_model(variant: str, mode: str = "lora"):
    cfg = load_config(
        "demo",
        [f"conditioning.variant={variant}", f"diffusion.mode={mode}", "loss.id_weight=0", "loss.pcl_weight=0"],
    )
    torch.manual_seed(0)
    model = build_dcac(cfg, NUM_IDS)
    model.memory.rebuild(
        torch.nn.functional.normalize(torch.randn(NUM_IDS, model.memory.features.shape[1]), dim=1),
        torch.arange(NUM_IDS),
    )
    return cfg, model


def _batch(cfg, model):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(8, 3, cfg.data.height, cfg.data.width, generator=g)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    latents = None
    if model.teacher is not None:
        views = torch.rand(8, 3, cfg.data.diffusion_size, cfg.data.diffusion_size, generator=g) * 2 - 1
        latents = model.teacher.sample_latents(*model.teacher.encode_posterior(views))
    return images, labels, latents


def _encoder_grad_norm(model):
    grads = [p.grad for p in model.reid.encoder.parameters() if p.requires_grad and p.grad is not None]
    return sum(float(g.norm()) for g in grads)


@pytest.mark.parametrize("variant,reaches", [("correlation", True), ("instance", True), ("hard", False)])
def test_diffusion_gradient_reaches_the_encoder_only_through_soft_conditioning(variant, reaches):
    cfg, model = _diffusion_only_model(variant)
    model.train()
    out = model(*_batch(cfg, model))
    assert "loss_diff" in out.parts
    out.loss.backward()
    norm = _encoder_grad_norm(model)
    if reaches:
        assert norm > 0
        if variant == "correlation":
            assert model.reid.classifier.weight.grad.abs().sum() > 0
    else:
        assert norm == 0
    # The VAE never learns; in LoRA mode the base UNet neither, and the LoRA up-projections do.
    assert all(p.grad is None for p in model.teacher.vae.parameters())
    lora = {n: p for n, p in model.teacher.unet.named_parameters() if "lora_" in n}
    assert lora and all(p.requires_grad for p in lora.values())
    assert all(p.grad is None for n, p in model.teacher.unet.named_parameters() if "lora_" not in n)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)


def test_baseline_has_no_teacher_and_no_diffusion_loss():
    cfg = load_config("demo", ["conditioning.variant=none"])
    model = build_dcac(cfg, NUM_IDS)
    assert model.teacher is None and model.conditioner is None
    images, labels, _ = _batch(cfg, model)
    model.memory.rebuild(
        torch.nn.functional.normalize(torch.randn(NUM_IDS, model.memory.features.shape[1]), dim=1),
        torch.arange(NUM_IDS),
    )
    out = model(images, labels)
    assert set(out.parts) == {"loss_id", "loss_pcl", "acc", "p_entropy", "p_true"}
    out.loss.backward()
    assert _encoder_grad_norm(model) > 0


def test_frozen_and_full_modes():
    cfg, frozen = _diffusion_only_model("correlation", mode="frozen")
    assert not any(p.requires_grad for p in frozen.teacher.unet.parameters())
    frozen.train()
    frozen(*_batch(cfg, frozen)).loss.backward()
    assert _encoder_grad_norm(frozen) > 0  # the frozen teacher still shapes the features
    _, full = _diffusion_only_model("correlation", mode="full")
    assert all(p.requires_grad for p in full.teacher.unet.parameters())
    assert not any(p.requires_grad for p in full.teacher.vae.parameters())
