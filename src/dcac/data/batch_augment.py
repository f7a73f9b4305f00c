"""The Re-ID training augmentation applied to a whole batch on its device (GPU-side augmentation).

``TrainTransform`` augments one decoded PIL image at a time in a loader worker. When decoding and augmenting
become the bottleneck of a fast step, ``data.augment_on=device`` makes the loader deliver images that are only
resized (``ResizeTransform``: H x W, uint8) and :class:`BatchTrainAugment` applies the same augmentation to
the batch on the GPU inside the training step, in a few batched operations:

* horizontal flip with probability ``flip_p``;
* zero padding of ``padding`` pixels on every side, then a crop back to ``H x W`` at a uniformly drawn offset
  in ``[0, 2 * padding]`` per axis;
* normalisation ``(x - mean) / std``;
* random erasing with probability ``erasing_p``: up to 100 tries of (area fraction ~ U(area), aspect ratio ~
  U(min_aspect, 1 / min_aspect)), the first try whose rounded height and width fit inside the image is
  placed at a uniformly drawn position and filled with the normalisation mean values; no try fits → no
  erasing.

Each image's draws have the same distribution as ``TrainTransform``'s (``tests/data/test_batch_augment.py``
compares the two empirically); the random streams differ, so the two paths give different (equally
distributed) images for the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dcac.data.transforms import ERASING_TRIES, TrainAugmentSettings


@dataclass
class BatchTrainAugment(TrainAugmentSettings):
    """TrainTransform's augmentation applied to a whole batch on its device, equal in distribution."""

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment ``images`` (B x 3 x H x W, uint8 or float in [0, 1], on any device); draws use ``generator``.

        uint8 is converted as ``to_tensor`` converts a PIL image (``float() / 255``), bit for bit.
        """
        if images.ndim != 4 or images.shape[1:] != (3, self.height, self.width):
            raise ValueError(f"images must be B x 3 x {self.height} x {self.width}, got {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        batch, device = images.shape[0], images.device

        def uniform(*shape: int) -> torch.Tensor:
            return torch.rand(shape, generator=generator, device=device, dtype=torch.float64)

        flip = uniform(batch) < self.flip_p
        x = torch.where(flip[:, None, None, None], images.flip(-1), images)
        if self.padding > 0:
            x = self._pad_crop(x, uniform(batch), uniform(batch))
        mean = torch.tensor(list(self.mean), dtype=x.dtype, device=device).view(1, 3, 1, 1)
        std = torch.tensor(list(self.std), dtype=x.dtype, device=device).view(1, 3, 1, 1)
        x = (x - mean) / std
        erase = self._erasing_mask(uniform(batch) < self.erasing_p, uniform)
        return torch.where(erase[:, None], mean, x).contiguous()

    def _pad_crop(self, x: torch.Tensor, u_top: torch.Tensor, u_left: torch.Tensor) -> torch.Tensor:
        span = 2 * self.padding + 1
        top = (u_top * span).long().clamp_(max=span - 1)
        left = (u_left * span).long().clamp_(max=span - 1)
        padded = F.pad(x, (self.padding,) * 4, value=0.0)
        rows = top[:, None] + torch.arange(self.height, device=x.device)  # B x H
        cols = left[:, None] + torch.arange(self.width, device=x.device)  # B x W
        batch_index = torch.arange(x.shape[0], device=x.device)[:, None, None]
        # Advanced indexing on dims 0, 2, 3 puts the channel dim last: B x H x W x 3.
        return padded.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    def _erasing_mask(self, apply: torch.Tensor, uniform) -> torch.Tensor:
        """B x H x W mask of the erased pixels: every try drawn at once, the first that fits is used."""
        batch, height, width = apply.shape[0], self.height, self.width
        low, high = self.erasing_area
        area = (low + (high - low) * uniform(batch, ERASING_TRIES)) * height * width
        aspect = self.erasing_min_aspect + (1.0 / self.erasing_min_aspect - self.erasing_min_aspect) * uniform(
            batch, ERASING_TRIES
        )
        h = torch.round(torch.sqrt(area * aspect)).long()  # round half to even, as Python's round
        w = torch.round(torch.sqrt(area / aspect)).long()
        fits = (h > 0) & (h < height) & (w > 0) & (w < width)
        first = fits.long().argmax(dim=1, keepdim=True)  # the first fitting try (0 when none fits)
        h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
        apply = apply & fits.any(dim=1)
        top = (uniform(batch) * (height - h + 1)).long().clamp_(min=0)
        left = (uniform(batch) * (width - w + 1)).long().clamp_(min=0)
        top, left = torch.minimum(top, height - h), torch.minimum(left, width - w)
        rows = torch.arange(height, device=apply.device)[None, :]
        cols = torch.arange(width, device=apply.device)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])
        in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])
        return apply[:, None, None] & in_rows[:, :, None] & in_cols[:, None, :]
