"""The inference model a user gets from ``dcac.load``: a trained Re-ID model plus its test-time preprocessing.

``extract`` turns a folder, image files, PIL images or ``H×W×3`` uint8 arrays into L2-normalised features,
preprocessed exactly as evaluation preprocesses them (``dcac.data.transforms.build_test_transform`` at the
run's input size).  A tensor input is taken as already preprocessed model input (``B×3×H×W``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dcac.config import DCACConfig
from dcac.config.compat import eval_interpolation
from dcac.data.transforms import build_test_transform
from dcac.hub.download import RUN_FILES, resolve_weights
from dcac.inference.feature_store import file_sha256
from dcac.inference.image_inputs import ImageLike, expand_inputs, load_rgb
from dcac.models.build import load_reid_model
from dcac.models.reid_model import ReIDModel
from dcac.storage.run_folder import resolve_run

# A progress bar for a handful of images is noise; above this many images extraction takes a while.
PROGRESS_MIN_IMAGES = 512


class _ImageListDataset(Dataset):
    def __init__(self, images: Sequence[ImageLike], transform) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(load_rgb(self.images[index]))


class ReIDPredictor:
    """A trained Re-ID model in eval mode with its input size and preprocessing."""

    def __init__(
        self,
        model: ReIDModel,
        config: DCACConfig,
        *,
        run_info: dict[str, Any] | None = None,
        source: str = "",
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config = config
        self.run_info = dict(run_info or {})
        self.source = source
        self.transform = build_test_transform(
            config.data.height, config.data.width, interpolation=eval_interpolation(config)
        )
        self.weights_file: Path | None = None
        self._weights_sha256: str | None = None

    @classmethod
    def from_run(cls, run_or_checkpoint: str | Path, device: str | torch.device = "cpu") -> ReIDPredictor:
        """Load a run folder (or the ``reid_model.safetensors`` inside one), or a Hub id ``org/name[@revision]``
        of a run pushed with ``dcac push`` (fetched into the Hugging Face cache, see ``dcac.hub.download``)."""
        local = resolve_weights(run_or_checkpoint, RUN_FILES, what="checkpoint")
        model, config, run_info = load_reid_model(local, device)
        predictor = cls(model, config, run_info=run_info, source=str(run_or_checkpoint), device=device)
        predictor.weights_file = resolve_run(local)[1]
        return predictor

    from_pretrained = from_run  # the Hugging Face name for the same thing

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the weights file this model was loaded from ("" for a model built in memory)."""
        if self._weights_sha256 is None:
            self._weights_sha256 = file_sha256(self.weights_file) if self.weights_file is not None else ""
        return self._weights_sha256

    @property
    def image_size(self) -> tuple[int, int]:
        return self.config.data.height, self.config.data.width

    @property
    def feat_dim(self) -> int:
        return self.model.feat_dim

    def preprocess(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """The model input (``B×3×H×W``) for a list of images, as ``extract`` feeds it."""
        return torch.stack([self.transform(load_rgb(image)) for image in images])

    @torch.no_grad()
    def extract(
        self,
        inputs: ImageLike | Sequence[ImageLike] | torch.Tensor,
        *,
        batch_size: int | None = None,
        after_bn: bool = True,
        flip: bool = False,
        num_workers: int = 0,
        progress: bool | None = None,
    ) -> torch.Tensor:
        """L2-normalised features (``N×D`` float32, on the CPU), one row per image, in input order.

        ``inputs``: a folder (read recursively in sorted path order, see ``find_images``), an image path,
        a PIL image, an ``H×W×3`` uint8 array, a list of any of these, or a preprocessed tensor.
        ``after_bn`` selects ``f_bn`` (default, the evaluation feature) or ``f``; ``flip`` averages each image's
        feature with its mirror's (the flip test; not in the ONNX export).  ``batch_size`` defaults
        to the run's ``data.test_batch_size``; ``progress`` (None: only for large inputs) shows tqdm.
        """
        batch_size = batch_size or self.config.data.test_batch_size
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(inputs, torch.Tensor):
            batches = torch.split(inputs.unsqueeze(0) if inputs.dim() == 3 else inputs, batch_size)
            total = inputs.shape[0] if inputs.dim() == 4 else 1
        else:
            images = expand_inputs(inputs)
            batches = DataLoader(
                _ImageListDataset(images, self.transform), batch_size=batch_size, num_workers=num_workers
            )
            total = len(images)
        show = total >= PROGRESS_MIN_IMAGES if progress is None else progress
        chunks = [
            self.model.extract(batch.to(self.device), after_bn=after_bn, flip=flip).float().cpu()
            for batch in tqdm(batches, desc="extracting features", unit="batch", disable=not show)
        ]
        return torch.cat(chunks) if chunks else torch.empty(0, self.feat_dim)
