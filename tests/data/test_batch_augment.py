"""The batched (GPU-side) augmentation draws each image's flip, crop offset and erasing rectangle from the same
distribution as the per-image TrainTransform, and applies them exactly.

Both paths augment one coded image (every pixel's row and column written in its red and green values, blue
at full scale), so the parameters they drew can be read back from each output: blue tells image (1), padding
(-1) and erased (0.5, the fill) pixels apart; red and green give the source position of every image pixel.
The parameters of 4,000 draws per path are compared: rates and per-value frequencies within 4.5 standard
errors, rectangle sizes and positions by a two-sample Kolmogorov-Smirnov statistic at the 0.1 % level.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from dcac.data.batch_augment import BatchTrainAugment
from dcac.data.transforms import ResizeTransform, build_train_transform

H, W, PAD, N = 32, 16, 2, 4000


def _coded_image() -> np.ndarray:
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    return np.stack([(rows + 1) * 7, (cols + 1) * 15, np.full((H, W), 255)], axis=-1).astype(np.uint8)


def _decode(y: torch.Tensor) -> dict:
    """flip, top, left, and the erased rectangle (or None) of one normalised output."""
    blue = y[2]
    erased = (blue == 0.5).nonzero()
    rect = None
    if len(erased):
        (t, l), (b, r) = erased.min(0).values.tolist(), erased.max(0).values.tolist()
        rect = (b - t + 1, r - l + 1, t, l)
    image = blue == 1.0
    row = int(image.sum(1).argmax())
    xs = image[row].nonzero().flatten().tolist()
    src_row = round(float((y[0, row, xs[0]] * 0.5 + 0.5) * 255) / 7) - 1
    src_cols = [round(float((y[1, row, x] * 0.5 + 0.5) * 255) / 15) - 1 for x in xs[:2]]
    flip = src_cols[1] < src_cols[0]
    col = (W - 1 - src_cols[0]) if flip else src_cols[0]
    return {"flip": flip, "top": src_row - row + PAD, "left": col - xs[0] + PAD, "rect": rect}


def _cpu_draws() -> list[dict]:
    transform = build_train_transform(H, W, padding=PAD, generator=torch.Generator().manual_seed(0))
    image = Image.fromarray(_coded_image())
    return [_decode(transform(image)) for _ in range(N)]


def _batch_draws() -> list[dict]:
    augment = BatchTrainAugment(H, W, padding=PAD)
    images = torch.from_numpy(_coded_image()).permute(2, 0, 1).float().div(255).expand(N, 3, H, W)
    out = augment(images, generator=torch.Generator().manual_seed(1))
    return [_decode(y) for y in out]


@pytest.fixture(scope="module")
def draws():
    return _cpu_draws(), _batch_draws()


def _close_rates(a: list[bool], b: list[bool]) -> None:
    pa, pb = np.mean(a), np.mean(b)
    se = math.sqrt(max(pa * (1 - pa), 1e-4) / len(a) + max(pb * (1 - pb), 1e-4) / len(b))
    assert abs(pa - pb) < 4.5 * se, (pa, pb)


def _ks_ok(a: list[int], b: list[int]) -> None:
    a, b = np.sort(a), np.sort(b)
    grid = np.union1d(a, b)
    d = np.abs(np.searchsorted(a, grid, side="right") / len(a) - np.searchsorted(b, grid, side="right") / len(b)).max()
    assert d < 1.95 * math.sqrt((len(a) + len(b)) / (len(a) * len(b))), d


def test_flip_and_crop_offsets_are_distributed_alike(draws):
    cpu, batch = draws
    _close_rates([d["flip"] for d in cpu], [d["flip"] for d in batch])
    assert abs(np.mean([d["flip"] for d in batch]) - 0.5) < 0.04
    for key in ("top", "left"):
        values = {d[key] for d in cpu} | {d[key] for d in batch}
        assert values == set(range(2 * PAD + 1)), key  # every offset of [0, 2 * padding] occurs, no other
        for v in values:
            _close_rates([d[key] == v for d in cpu], [d[key] == v for d in batch])


def test_erasing_is_distributed_alike(draws):
    cpu, batch = draws
    _close_rates([d["rect"] is not None for d in cpu], [d["rect"] is not None for d in batch])
    for i in range(4):  # height, width, top, left
        _ks_ok([d["rect"][i] for d in cpu if d["rect"]], [d["rect"][i] for d in batch if d["rect"]])
    # Positions are uniform over every place the rectangle fits, the last (flush with the far edge) included.
    cpu_rects, batch_rects = [d["rect"] for d in cpu if d["rect"]], [d["rect"] for d in batch if d["rect"]]
    _close_rates([h + t == H for h, w, t, l in cpu_rects], [h + t == H for h, w, t, l in batch_rects])
    _close_rates([w + l == W for h, w, t, l in cpu_rects], [w + l == W for h, w, t, l in batch_rects])
    for d in batch:
        if d["rect"]:
            h, w, t, l = d["rect"]
            assert (
                0 < h < H
                and 0 < w < W
                and t + h <= H
                and l + w <= W
                and 0.02 * H * W * 0.5 <= h * w <= 0.4 * H * W * 1.5
            )


def test_the_drawn_operations_are_applied_exactly():
    augment = BatchTrainAugment(H, W, padding=PAD)
    images = torch.rand(64, 3, H, W, generator=torch.Generator().manual_seed(2))
    out = augment(images, generator=torch.Generator().manual_seed(3))
    coded = torch.from_numpy(_coded_image()).permute(2, 0, 1).float().div(255).expand(64, 3, H, W)
    params = [_decode(y) for y in augment(coded, generator=torch.Generator().manual_seed(3))]  # same draws
    for x, y, p in zip(images, out, params):
        expected = torch.nn.functional.pad(x.flip(-1) if p["flip"] else x, (PAD,) * 4)[
            :, p["top"] : p["top"] + H, p["left"] : p["left"] + W
        ]
        expected = (expected - 0.5) / 0.5
        if p["rect"]:
            h, w, t, l = p["rect"]
            expected[:, t : t + h, l : l + w] = 0.5
        torch.testing.assert_close(y, expected, rtol=0, atol=0)


def test_bad_shape_is_an_error():
    with pytest.raises(ValueError, match="B x 3 x 32 x 16"):
        BatchTrainAugment(H, W)(torch.zeros(2, 3, 16, 16))


@pytest.mark.parametrize("flip_p", [0.0, 1.0])
def test_resize_then_batch_augment_equals_the_per_image_transform(flip_p):
    """The device path's input (ResizeTransform: uint8) and fixed operations give TrainTransform's tensor bit for
    bit, when the random operations are fixed (flip always or never, no crop, no erasing)."""
    rng = np.random.default_rng(4)
    images = [Image.fromarray(rng.integers(0, 256, (61, 29, 3), dtype=np.uint8)) for _ in range(5)]
    settings = dict(height=H, width=W, flip_p=flip_p, padding=0, erasing_p=0.0)
    per_image = torch.stack([build_train_transform(**settings)(im) for im in images])
    resized = torch.stack([ResizeTransform(H, W)(im) for im in images])
    assert resized.dtype == torch.uint8 and resized.shape == (5, 3, H, W)
    batched = BatchTrainAugment(**settings)(resized, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(batched, per_image, rtol=0, atol=0)
