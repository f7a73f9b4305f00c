"""The latent cache samples exactly the law of the per-step VAE: same posterior, same draw for the same eps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from dcac.data.image_io import read_rgb
from dcac.data.records import ImageRecord
from dcac.data.transforms import build_diffusion_transform
from dcac.engine.latent_cache import LatentCache
from dcac.models.diffusion_teacher import DiffusionTeacher, DiffusionTeacherConfig

SIZE = 64


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return DiffusionTeacher(DiffusionTeacherConfig(preset="tiny", image_size=SIZE)).eval()


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Five JPEG person crops of different sizes (the VAE view resizes them to SIZE x SIZE)."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    out = []
    for i, (h, w) in enumerate([(128, 64), (96, 40), (160, 80), (64, 64), (100, 50)]):
        path = folder / f"{i:04d}_c1s1_000000_00.jpg"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=95)
        out.append(ImageRecord(path=str(path), pid=i, camid=0, dataset="synthetic"))
    return out


def _views(records):
    """The per-step path's VAE input: the same decoded file through the same transform."""
    transform = build_diffusion_transform(SIZE)
    return torch.stack([transform(read_rgb(r.path)) for r in records])


def test_cached_posterior_is_the_vae_latent_dist(teacher, records):
    cache = LatentCache.build(teacher, records, size=SIZE, batch_size=2)
    assert len(cache) == len(records)
    with torch.no_grad():
        reference = teacher.vae.encode(_views(records)).latent_dist
    torch.testing.assert_close(cache.mean, reference.mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(cache.std, reference.std, rtol=0, atol=1e-5)
    assert cache.std.min() > 0


def test_same_eps_gives_the_same_latent_as_the_per_step_vae(teacher, records):
    """z = (mean + std * eps) * 0.18215 from the cache equals diffusers' latent_dist.sample() * 0.18215."""
    cache = LatentCache.build(teacher, records, size=SIZE)
    indices = torch.tensor([3, 0, 4, 3, 1])
    views = _views(records)[indices]
    with torch.no_grad():
        reference = teacher.vae.encode(views).latent_dist.sample(generator=torch.Generator().manual_seed(5))
    cached = cache.sample(teacher, indices, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(cached, reference * teacher.latent_scale, rtol=0, atol=1e-6)
    assert teacher.latent_scale == teacher.vae.config.scaling_factor == 0.18215


def test_sample_picks_the_indexed_rows():
    mean = torch.arange(3 * 4 * 2 * 2, dtype=torch.float32).reshape(3, 4, 2, 2)
    cache = LatentCache(mean, torch.zeros_like(mean))
    teacher = DiffusionTeacher(DiffusionTeacherConfig(preset="tiny", image_size=SIZE))
    got = cache.sample(teacher, torch.tensor([2, 0, 2]))
    torch.testing.assert_close(got, mean[[2, 0, 2]] * 0.18215, rtol=0, atol=0)


def test_many_draws_have_the_posterior_law(teacher, records):
    """Over 20,000 draws of one image: per-element mean and std within 5 standard errors, Gaussian shape (KS)."""
    cache = LatentCache.build(teacher, records[:1], size=SIZE)
    n = 20_000
    draws = cache.sample(teacher, torch.zeros(n, dtype=torch.long), generator=torch.Generator().manual_seed(11))
    scale = teacher.latent_scale
    mu, sigma = cache.mean[0] * scale, cache.std[0] * scale
    emp_mean, emp_std = draws.mean(dim=0), draws.std(dim=0)
    assert ((emp_mean - mu).abs() <= 5 * sigma / n**0.5).all()
    assert ((emp_std / sigma - 1).abs() <= 5 / (2 * n) ** 0.5).all()
    standardised = ((draws - mu) / sigma).flatten()[::97].double().numpy()
    assert stats.kstest(standardised, "norm").pvalue > 1e-3


def test_mismatched_mean_and_std_are_rejected():
    with pytest.raises(ValueError, match="differ in shape"):
        LatentCache(torch.zeros(2, 4, 2, 2), torch.zeros(2, 4, 2, 1))
