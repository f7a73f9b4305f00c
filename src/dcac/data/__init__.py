"""dcac.data: dataset loaders, source/target protocols, identity sampler, transforms and synthetic data."""

from dcac.data.datasets import get_dataset
from dcac.data.errors import CorruptImageError, DatasetLayoutError, EmptySplitError, ImageNameError
from dcac.data.image_dataset import ReIDImageDataset
from dcac.data.image_io import read_rgb, verify_images
from dcac.data.protocols import Protocol, TrainSet, build_protocol, parse_setting
from dcac.data.records import ImageRecord, ReIDDataset
from dcac.data.sampler import PKBatchSampler
from dcac.data.synthetic import write_synthetic
from dcac.data.transforms import build_diffusion_transform, build_test_transform, build_train_transform

__all__ = [
    "CorruptImageError", "DatasetLayoutError", "EmptySplitError", "ImageNameError", "ImageRecord",
    "PKBatchSampler", "Protocol", "ReIDDataset", "ReIDImageDataset", "TrainSet", "build_diffusion_transform",
    "build_protocol", "build_test_transform", "build_train_transform", "get_dataset", "parse_setting",
    "read_rgb", "verify_images", "write_synthetic",
]
