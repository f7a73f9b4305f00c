"""The VAE posterior of every training image, computed once.

The diffusion view of an image is not augmented (docs/method.md §3: the un-augmented image resized to 128x128), so
the frozen VAE's posterior N(mean, std^2) of each image never changes during training.  Encoding it once and
drawing ``z = (mean + std * eps) * 0.18215`` each step is exactly the distribution the paper's code samples
from by running the VAE encoder at every step — at a fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dcac.data.image_dataset import ReIDImageDataset
from dcac.data.records import ImageRecord
from dcac.data.transforms import build_diffusion_transform
from dcac.models.diffusion_teacher import DiffusionTeacher


class LatentCache:
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        if mean.shape != std.shape:
            raise ValueError(f"posterior mean {tuple(mean.shape)} and std {tuple(std.shape)} differ in shape")
        self.mean = mean
        self.std = std

    def __len__(self) -> int:
        return self.mean.shape[0]

    def sample(
        self, teacher: DiffusionTeacher, indices: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        idx = indices.to(self.mean.device)
        return teacher.sample_latents(self.mean[idx].float(), self.std[idx].float(), generator=generator)

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        teacher: DiffusionTeacher,
        records: Sequence[ImageRecord],
        *,
        size: int,
        batch_size: int = 128,
        num_workers: int = 0,
        device: torch.device | str = "cpu",
        storage_dtype: torch.dtype = torch.float32,
        progress: bool = False,
    ) -> LatentCache:
        dataset = ReIDImageDataset(list(records), build_diffusion_transform(size))
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        means, stds = [], []
        for batch in tqdm(loader, desc="VAE latents", disable=not progress, leave=False):
            mean, std = teacher.encode_posterior(batch["image"].to(device))
            means.append(mean.to(storage_dtype))
            stds.append(std.to(storage_dtype))
        return cls(torch.cat(means), torch.cat(stds))
