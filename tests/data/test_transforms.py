"""Transforms: shapes, value ranges, flip, pad + crop, random-erasing statistics, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dcac.data.transforms import build_diffusion_transform, build_test_transform, build_train_transform


@pytest.fixture
def image() -> Image.Image:
    """An asymmetric 40x80 (W x H) image: a left-to-right ramp in red, top-to-bottom in green."""
    xs = np.linspace(0, 255, 40)[None, :].repeat(80, 0)
    ys = np.linspace(0, 255, 80)[:, None].repeat(40, 1)
    return Image.fromarray(np.stack([xs, ys, np.full_like(xs, 30)], -1).astype(np.uint8))


def test_test_transform_matches_reference(image: Image.Image) -> None:
    out = build_test_transform(64, 32)(image)
    reference = np.asarray(image.resize((32, 64), Image.BICUBIC), dtype=np.float32) / 255.0
    assert out.shape == (3, 64, 32) and out.dtype == torch.float32
    assert torch.allclose(out, torch.from_numpy((reference - 0.5) / 0.5).permute(2, 0, 1), atol=1e-6)


def test_default_sizes(image: Image.Image) -> None:
    assert build_train_transform()(image).shape == (3, 256, 128)
    assert build_test_transform()(image).shape == (3, 256, 128)
    diffusion = build_diffusion_transform()(image)
    assert diffusion.shape == (3, 128, 128) and diffusion.min() >= -1 and diffusion.max() <= 1


def test_diffusion_transform_range_and_values() -> None:
    white, black = Image.new("RGB", (16, 32), (255, 255, 255)), Image.new("RGB", (16, 32), (0, 0, 0))
    transform = build_diffusion_transform(size=8)
    assert torch.equal(transform(white), torch.ones(3, 8, 8)) and torch.equal(transform(black), -torch.ones(3, 8, 8))


def test_flip_only(image: Image.Image) -> None:
    flip = build_train_transform(64, 32, flip_p=1.0, padding=0, erasing_p=0.0)
    assert torch.equal(flip(image), build_test_transform(64, 32)(image).flip(-1))
    generator = torch.Generator().manual_seed(0)
    half = build_train_transform(64, 32, flip_p=0.5, padding=0, erasing_p=0.0, generator=generator)
    plain = build_test_transform(64, 32)(image)
    flipped = sum(not torch.equal(half(image), plain) for _ in range(400))
    assert 160 < flipped < 240  # Binomial(400, 0.5): mean 200, sd 10


def test_pad_and_crop_is_a_shifted_window(image: Image.Image) -> None:
    plain = build_test_transform(64, 32)(image)
    padded = torch.nn.functional.pad(plain, (4, 4, 4, 4), value=-1.0)  # zero pixels normalise to -1
    generator = torch.Generator().manual_seed(1)
    crop = build_train_transform(64, 32, flip_p=0.0, padding=4, erasing_p=0.0, generator=generator)
    offsets = set()
    for _ in range(150):
        out = crop(image)
        matches = [(t, s) for t in range(9) for s in range(9) if torch.equal(out, padded[:, t : t + 64, s : s + 32])]
        assert matches
        offsets.add(matches[0])
    assert len(offsets) > 40  # offsets spread over the 9 x 9 possibilities


def test_random_erasing_statistics() -> None:
    black = Image.new("RGB", (32, 64), (0, 0, 0))  # normalised to -1 everywhere, so erased cells are 0.5
    generator = torch.Generator().manual_seed(2)
    erase = build_train_transform(64, 32, flip_p=0.0, padding=0, erasing_p=0.5, generator=generator)
    erased = 0
    for _ in range(400):
        out = erase(black)
        mask = (out == 0.5).all(0)
        assert ((out == 0.5) | (out == -1.0)).all()
        if mask.any():
            erased += 1
            rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
            h, w = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
            assert mask.sum() == h * w  # one filled rectangle
            assert 0.02 * 64 * 32 * 0.7 <= h * w <= 0.4 * 64 * 32 * 1.3  # area range, allowing for rounding
            assert 0.3 * 0.6 <= h / w <= (1 / 0.3) / 0.6
    assert 160 < erased < 240


def test_seeded_generators_reproduce(image: Image.Image) -> None:
    def run(seed: int) -> list[torch.Tensor]:
        transform = build_train_transform(64, 32, generator=torch.Generator().manual_seed(seed))
        return [transform(image) for _ in range(5)]

    first, again, other = run(7), run(7), run(8)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    torch.manual_seed(3)
    global_a = build_train_transform(64, 32)(image)
    torch.manual_seed(3)
    assert torch.equal(global_a, build_train_transform(64, 32)(image))
