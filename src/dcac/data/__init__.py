"""dcac.data: dataset loaders, source/target protocols, identity sampler, transforms and synthetic data.

The names below are imported on first use (PEP 562), so that importing a torch-free part of the package (the
dataset readers the CLI's argument parser needs) does not start torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "get_dataset": "datasets",
    "CorruptImageError": "errors",
    "DatasetLayoutError": "errors",
    "EmptySplitError": "errors",
    "ImageNameError": "errors",
    "ReIDImageDataset": "image_dataset",
    "read_rgb": "image_io",
    "verify_images": "image_io",
    "Protocol": "protocols",
    "TrainSet": "protocols",
    "build_protocol": "protocols",
    "parse_setting": "protocols",
    "ImageRecord": "records",
    "ReIDDataset": "records",
    "PKBatchSampler": "sampler",
    "write_synthetic": "synthetic",
    "build_diffusion_transform": "transforms",
    "build_test_transform": "transforms",
    "build_train_transform": "transforms",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'dcac.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"dcac.data.{_WHERE[name]}"), name)
