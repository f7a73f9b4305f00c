"""``dcac demo``'s per-epoch look at the mechanism: :func:`dcac.models.mechanism.mechanism_measurements` on one
fixed batch of the run's own training images (drawn once from the seed), logged as ``"event": "mechanism"``.

One fixed batch keeps the cost to a few forward passes per epoch and makes the epochs comparable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import default_collate

from dcac.data.image_dataset import ReIDImageDataset
from dcac.data.records import ImageRecord
from dcac.data.transforms import build_diffusion_transform, build_test_transform
from dcac.inference.training_log import MECHANISM_EVENT
from dcac.models.mechanism import mechanism_measurements


class MechanismProbe:
    """The trainer's ``on_epoch`` for the demo: measures the mechanism on a fixed batch and logs it."""

    def __init__(self, records: Sequence[ImageRecord], config, *, batch_size: int = 32) -> None:
        generator = torch.Generator().manual_seed(config.train.seed)
        chosen = [records[i] for i in torch.randperm(len(records), generator=generator)[:batch_size].tolist()]
        test_view = build_test_transform(config.data.height, config.data.width)
        batch = default_collate([ReIDImageDataset(chosen, test_view)[i] for i in range(len(chosen))])
        self.images, self.labels = batch["image"], batch["pid"]
        diffusion_view = build_diffusion_transform(config.data.diffusion_size)
        self.diffusion_images = torch.stack(
            [ReIDImageDataset(chosen, diffusion_view)[i]["image"] for i in range(len(chosen))]
        )
        self.seed = config.train.seed

    def __call__(self, run) -> None:
        device = run.accelerator.device
        latents = None
        teacher = run.dcac.teacher
        if teacher is not None:
            mean, std = teacher.encode_posterior(self.diffusion_images.to(device))
            latents = teacher.sample_latents(mean, std, torch.Generator(device).manual_seed(self.seed))
        values = mechanism_measurements(
            run.dcac, self.images.to(device), self.labels.to(device), latents, seed=self.seed
        )
        run.logger.log({"event": MECHANISM_EVENT, "epoch": run.epoch, **values})
