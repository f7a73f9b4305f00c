"""The torch ``Dataset`` over image records: one decode per item, feeding the Re-ID and diffusion inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from dcac.data.image_io import read_rgb
from dcac.data.records import ImageRecord

ImageTransform = Callable[[Image.Image], torch.Tensor]


class ReIDImageDataset(Dataset):
    """Items are ``{"image", "pid", "camid", "index"}`` (+ ``"diffusion_image"`` with a diffusion transform).

    Both tensors come from the same decoded file. An unreadable file raises
    :class:`dcac.data.errors.CorruptImageError` naming its path (never a silent retry).
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: ImageTransform,
        *,
        diffusion_transform: ImageTransform | None = None,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.diffusion_transform = diffusion_transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        record = self.records[index]
        image = read_rgb(record.path)
        item: dict[str, torch.Tensor | int] = {
            "image": self.transform(image),
            "pid": record.pid,
            "camid": record.camid,
            "index": index,
        }
        if self.diffusion_transform is not None:
            item["diffusion_image"] = self.diffusion_transform(image)
        return item
