"""DiffusionTeacher on tiny SD-shaped models: gradients, loss by hand, posterior, modes, loading."""

from __future__ import annotations

import math

import pytest
import torch

from dcac.models.diffusion_teacher import DiffusionTeacher, DiffusionTeacherConfig
from dcac.models.sd_configs import tiny_unet_config, tiny_vae_config
from dcac.models.sd_weights import build_unet, build_vae

D = 24
SIZE = 32  # tiny VAE keeps SD's 8x downsampling: 32x32 images -> 4x4x4 latents


def _teacher(**overrides) -> DiffusionTeacher:
    torch.manual_seed(0)
    config = DiffusionTeacherConfig(
        preset="tiny", unet_config=tiny_unet_config(cross_attention_dim=D), image_size=SIZE, lora_rank=4
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return DiffusionTeacher(config)


def _batch(seed=0, batch=3):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 4, SIZE // 8, SIZE // 8, generator=g)
    context = torch.randn(batch, D, generator=g, requires_grad=True)
    noise = torch.randn(latents.shape, generator=g)
    timesteps = torch.tensor([0, 499, 999][:batch])
    return latents, context, noise, timesteps


def _perturb_lora(teacher):
    with torch.no_grad():
        for p in teacher.trainable_parameters():
            p.normal_(0.0, 0.1)


def _alphas_cumprod_by_hand(steps=1000, start=0.00085, end=0.012):
    sqrt_betas = [math.sqrt(start) + (math.sqrt(end) - math.sqrt(start)) * i / (steps - 1) for i in range(steps)]
    return torch.tensor([b * b for b in sqrt_betas], dtype=torch.float64).neg().add(1).cumprod(0)


def test_only_lora_receives_gradients():
    teacher = _teacher().train()
    latents, context, noise, timesteps = _batch()
    teacher.loss(latents, context, timesteps=timesteps, noise=noise).backward()
    assert context.grad is not None and context.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.vae.parameters())
    trainable = {id(p) for p in teacher.trainable_parameters()}
    for name, p in teacher.unet.named_parameters():
        if "lora_" in name:
            assert id(p) in trainable
        else:
            assert id(p) not in trainable and p.grad is None, name
    assert any(p.grad.abs().sum() > 0 for n, p in teacher.unet.named_parameters() if "lora_B" in n)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_loss_equals_hand_computation(prediction_type):
    teacher = _teacher(prediction_type=prediction_type)
    _perturb_lora(teacher)
    latents, context, noise, timesteps = _batch()
    ab = _alphas_cumprod_by_hand()[timesteps].float().view(-1, 1, 1, 1)
    z_t = ab.sqrt() * latents + (1 - ab).sqrt() * noise
    with torch.no_grad():
        prediction = teacher.unet(z_t, timesteps, encoder_hidden_states=context[:, None]).sample
        target = noise if prediction_type == "epsilon" else ab.sqrt() * noise - (1 - ab).sqrt() * latents
        expected = ((prediction - target) ** 2).mean()
        got = teacher.loss(latents, context, timesteps=timesteps, noise=noise)
    assert got.dtype == torch.float32 and got.ndim == 0
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_random_timesteps_and_noise_follow_the_generator():
    teacher = _teacher()
    latents, context, _, _ = _batch(batch=3)
    with torch.no_grad():
        first = teacher.loss(latents, context, generator=torch.Generator().manual_seed(11))
        again = teacher.loss(latents, context, generator=torch.Generator().manual_seed(11))
        other = teacher.loss(latents, context, generator=torch.Generator().manual_seed(12))
    assert torch.equal(first, again) and not torch.equal(first, other)
    g = torch.Generator().manual_seed(11)
    timesteps = torch.randint(0, 1000, (3,), generator=g)
    noise = torch.randn(latents.shape, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(first, teacher.loss(latents, context, timesteps=timesteps, noise=noise))


def test_posterior_matches_vae_and_sample_matches_latent_dist():
    teacher = _teacher()
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2)) * 2 - 1
    mean, std = teacher.encode_posterior(images)
    assert mean.shape == std.shape == (2, 4, SIZE // 8, SIZE // 8)
    assert not mean.requires_grad
    with torch.no_grad():
        dist = teacher.vae.encode(images).latent_dist
        vae_sample = dist.sample(generator=torch.Generator().manual_seed(9))
    assert torch.equal(mean, dist.mean) and torch.equal(std, dist.std)
    latents = teacher.sample_latents(mean, std, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(latents, vae_sample * 0.18215, rtol=0, atol=0)
    with pytest.raises(ValueError, match=f"3 x {SIZE} x {SIZE}"):
        teacher.encode_posterior(torch.zeros(2, 3, SIZE * 2, SIZE))


def test_shortcut_attention_and_checkpointing_leave_loss_and_gradients_unchanged():
    results = []
    for overrides in ({"single_token_attention": False}, {}, {"gradient_checkpointing": True}):
        teacher = _teacher(**overrides).train()
        _perturb_lora(teacher)
        latents, context, noise, timesteps = _batch()
        loss = teacher.loss(latents, context, timesteps=timesteps, noise=noise)
        loss.backward()
        results.append((loss.detach(), context.grad))
    for loss, grad in results[1:]:
        torch.testing.assert_close(loss, results[0][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad, results[0][1], rtol=1e-4, atol=1e-6)


def test_vae_stays_in_eval_and_modes():
    teacher = _teacher()
    teacher.train()
    assert teacher.unet.training and not teacher.vae.training
    assert not any(p.requires_grad for p in teacher.vae.parameters())
    assert teacher.cross_attention_dim == D
    full = _teacher(mode="full")
    assert len(full.trainable_parameters()) == len(list(full.unet.parameters()))
    assert not any("lora_" in n for n, _ in full.unet.named_parameters())
    assert _teacher(mode="frozen").trainable_parameters() == []


def test_bad_configs_and_inputs():
    with pytest.raises(ValueError, match="preset"):
        DiffusionTeacherConfig(preset="sdxl")
    with pytest.raises(ValueError, match="training mode"):
        DiffusionTeacherConfig(mode="partial")
    with pytest.raises(ValueError, match="prediction type"):
        DiffusionTeacherConfig(prediction_type="sample")
    teacher = _teacher()
    latents, context, _, _ = _batch()
    with pytest.raises(ValueError, match=f"B x {D}"):
        teacher.loss(latents, context[:, None])
    with pytest.raises(ValueError, match="B = 3"):
        teacher.loss(latents, context[:2])


def test_weights_from_diffusers_folder(tmp_path):
    torch.manual_seed(4)
    unet, vae = build_unet(tiny_unet_config(cross_attention_dim=D)), build_vae(tiny_vae_config())
    unet.save_pretrained(tmp_path / "unet")
    vae.save_pretrained(tmp_path / "vae")
    teacher = _teacher(weights=str(tmp_path))
    base = {n.replace(".base_layer", ""): p for n, p in teacher.unet.named_parameters() if "lora_" not in n}
    assert base.keys() == dict(unet.named_parameters()).keys()
    assert all(torch.equal(base[n], p) for n, p in unet.named_parameters())
    assert all(torch.equal(a, b) for a, b in zip(teacher.vae.parameters(), vae.parameters()))
