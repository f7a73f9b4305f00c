"""Image transforms (Pillow + torch; torchvision cannot be used here): PIL RGB image -> float tensor 3xHxW.

Train (Re-ID branch, docs/method.md §5, in CLIP-ReID's order): bicubic resize to HxW, horizontal flip
(p=0.5), zero padding of 10 pixels + random crop back to HxW, normalisation, random erasing (p=0.5).
Random erasing follows CLIP-ReID / reid-strong-baseline: up to 100 tries to draw a rectangle with area
fraction U(0.02, 0.4) of the image and aspect ratio h/w ~ U(0.3, 1/0.3) that fits; it is filled with the
*normalisation mean values* (0.5 per channel by default) written into the already-normalised tensor. That
is CLIP-ReID's convention (torchvision-style erasing would fill with 0 = the mean pixel instead); dcac
keeps it so trained models match the reference recipe.

Randomness comes from a ``torch.Generator`` given at construction, or from torch's global generator when
none is given (DataLoader workers seed that one per worker), so every draw is reproducible. With
DataLoader workers leave ``generator`` unset: each worker would get a copy of the same generator state and
repeat the other workers' draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

MEAN_STD_HALF = (0.5, 0.5, 0.5)


def to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 tensor 3xHxW (contiguous)."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor 3xHxW in [0, 1]."""
    return to_uint8_tensor(image).float().div_(255.0)


def _channel_tensor(values: Sequence[float]) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.float32).view(3, 1, 1)


#: PIL filters by name (torchvision's Resize on a PIL image calls PIL's resize with the same filter).
RESIZE_FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}


@dataclass
class EvalTransform:
    """Resize to ``height`` x ``width`` (aspect ratio not kept; bicubic, or bilinear where the official code used
    it: ``dcac.config.compat.eval_interpolation``), then ``(x - mean) / std``."""

    height: int = 256
    width: int = 128
    mean: Sequence[float] = MEAN_STD_HALF
    std: Sequence[float] = MEAN_STD_HALF
    interpolation: str = "bicubic"

    def __call__(self, image: Image.Image) -> torch.Tensor:
        resized = image.convert("RGB").resize((self.width, self.height), RESIZE_FILTERS[self.interpolation])
        return (to_tensor(resized) - _channel_tensor(self.mean)) / _channel_tensor(self.std)


#: Tries to draw a random-erasing rectangle that fits before the image is left as it is.
ERASING_TRIES = 100


@dataclass
class TrainAugmentSettings:
    """The Re-ID training augmentation's parameters, shared by the per-image and the batched implementation."""

    height: int = 256
    width: int = 128
    flip_p: float = 0.5
    padding: int = 10
    erasing_p: float = 0.5
    erasing_area: tuple[float, float] = (0.02, 0.4)
    erasing_min_aspect: float = 0.3
    mean: Sequence[float] = MEAN_STD_HALF
    std: Sequence[float] = MEAN_STD_HALF


@dataclass
class TrainTransform(TrainAugmentSettings):
    """The Re-ID training augmentation described in the module docstring."""

    generator: torch.Generator | None = None

    def _uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        return low + (high - low) * torch.rand((), generator=self.generator).item()

    def _randint(self, high_inclusive: int) -> int:
        return int(torch.randint(high_inclusive + 1, (), generator=self.generator))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        resized = image.convert("RGB").resize((self.width, self.height), Image.BICUBIC)
        x = to_tensor(resized)
        if self._uniform() < self.flip_p:
            x = x.flip(-1)
        if self.padding > 0:
            x = F.pad(x, (self.padding,) * 4, value=0.0)
            top, left = self._randint(2 * self.padding), self._randint(2 * self.padding)
            x = x[:, top : top + self.height, left : left + self.width]
        x = (x - _channel_tensor(self.mean)) / _channel_tensor(self.std)
        if self._uniform() < self.erasing_p:
            self._erase(x)
        return x.contiguous()

    def _erase(self, x: torch.Tensor) -> None:
        _, height, width = x.shape
        for _ in range(ERASING_TRIES):
            area = self._uniform(*self.erasing_area) * height * width
            aspect = self._uniform(self.erasing_min_aspect, 1.0 / self.erasing_min_aspect)
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if 0 < h < height and 0 < w < width:
                top, left = self._randint(height - h), self._randint(width - w)
                x[:, top : top + h, left : left + w] = _channel_tensor(self.mean)
                return


@dataclass
class ResizeTransform:
    """The loader's part when the training augmentation runs on the device (``data.augment_on=device``):
    TrainTransform's bicubic resize only, as uint8 3xHxW (a quarter of float32's bytes to move to the GPU).

    :class:`dcac.data.batch_augment.BatchTrainAugment` converts it as :func:`to_tensor` does (``/ 255``), so
    the two paths start from the same float image.
    """

    height: int = 256
    width: int = 128

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return to_uint8_tensor(image.convert("RGB").resize((self.width, self.height), Image.BICUBIC))


@dataclass
class DiffusionTransform:
    """The diffusion teacher's input: bicubic resize to ``size`` x ``size`` (no augmentation), in [-1, 1]."""

    size: int = 128

    def __call__(self, image: Image.Image) -> torch.Tensor:
        resized = image.convert("RGB").resize((self.size, self.size), Image.BICUBIC)
        return to_tensor(resized).mul_(2.0).sub_(1.0)


def build_train_transform(
    height: int = 256,
    width: int = 128,
    flip_p: float = 0.5,
    padding: int = 10,
    erasing_p: float = 0.5,
    mean: Sequence[float] = MEAN_STD_HALF,
    std: Sequence[float] = MEAN_STD_HALF,
    *,
    generator: torch.Generator | None = None,
) -> TrainTransform:
    return TrainTransform(
        height=height,
        width=width,
        flip_p=flip_p,
        padding=padding,
        erasing_p=erasing_p,
        mean=tuple(mean),
        std=tuple(std),
        generator=generator,
    )


def build_test_transform(
    height: int = 256,
    width: int = 128,
    mean: Sequence[float] = MEAN_STD_HALF,
    std: Sequence[float] = MEAN_STD_HALF,
    interpolation: str = "bicubic",
) -> EvalTransform:
    if interpolation not in RESIZE_FILTERS:
        raise ValueError(f"interpolation must be one of {tuple(RESIZE_FILTERS)}, got {interpolation!r}")
    return EvalTransform(height=height, width=width, mean=tuple(mean), std=tuple(std), interpolation=interpolation)


def build_diffusion_transform(size: int = 128) -> DiffusionTransform:
    return DiffusionTransform(size=size)
