"""Feature extraction over a list of image records, shared by the memory rebuild and evaluation.

``dcac.inference.predictor.ReIDPredictor.extract`` is the user-facing counterpart: it takes image files, PIL
images, arrays or tensors instead of dataset records.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dcac.data.image_dataset import ReIDImageDataset
from dcac.data.records import ImageRecord
from dcac.data.transforms import build_test_transform
from dcac.models.reid_model import ReIDModel


def image_loader(
    records: Sequence[ImageRecord],
    height: int,
    width: int,
    batch_size: int,
    num_workers: int,
    interpolation: str = "bicubic",
) -> DataLoader:
    dataset = ReIDImageDataset(list(records), build_test_transform(height, width, interpolation=interpolation))
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=torch.cuda.is_available()
    )


@torch.no_grad()
def extract_features(
    model: ReIDModel,
    loader: DataLoader,
    *,
    after_bn: bool = True,
    flip: bool = False,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    progress: str | None = None,
) -> torch.Tensor:
    """L2-normalised features (float32, on ``device``) of every image in ``loader``, in order (``flip``: the
    flip test, see :meth:`ReIDModel.extract`).

    The model is put in eval mode (BN running statistics, no dropout) and restored to its previous mode.
    """
    was_training = model.training
    model.eval()
    device = torch.device(device)
    chunks = []
    try:
        for batch in tqdm(loader, desc=progress, disable=progress is None, leave=False):
            images = batch["image"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                chunks.append(model.extract(images, after_bn=after_bn, flip=flip))
    finally:
        model.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0, model.bottleneck.num_features, device=device)
