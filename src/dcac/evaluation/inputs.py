"""Conversion and validation of the arrays that evaluation functions accept.

Every public evaluation function takes numpy arrays or torch tensors; this module turns them into
torch tensors (without copying numpy memory where possible) and rejects malformed input with an
error that names the argument and what was expected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["all_finite", "as_tensor", "as_label_vector", "as_feature_matrix", "resolve_device"]


def as_tensor(value: Any, name: str) -> torch.Tensor:
    """Return ``value`` as a torch tensor (numpy arrays are wrapped, not copied)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (list, tuple)):
        return torch.as_tensor(np.asarray(value))
    raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(value).__name__}")


def as_label_vector(value: Any, name: str, length: int | None, device: torch.device) -> torch.Tensor:
    """Return a 1-D int64 tensor of identity or camera labels on ``device``."""
    tensor = as_tensor(value, name)
    if tensor.dim() != 1:
        raise ValueError(f"{name}: expected a 1-D array of labels, got shape {tuple(tensor.shape)}")
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise ValueError(f"{name}: expected integer labels, got dtype {tensor.dtype}")
    if length is not None and tensor.numel() != length:
        raise ValueError(f"{name}: expected {length} labels, got {tensor.numel()}")
    return tensor.to(device=device, dtype=torch.int64)


def as_feature_matrix(value: Any, name: str, device: torch.device) -> torch.Tensor:
    """Return a 2-D floating tensor (float32 unless given float64) of finite features on ``device``."""
    tensor = as_tensor(value, name)
    if tensor.dim() != 2 or tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty 2-D (num_images, dim) array, got shape {tuple(tensor.shape)}")
    dtype = torch.float64 if tensor.dtype == torch.float64 else torch.float32
    tensor = tensor.to(device=device, dtype=dtype)
    if not all_finite(tensor):
        raise ValueError(f"{name}: features contain NaN or infinite values")
    return tensor


def resolve_device(device: str | torch.device | None, *candidates: Any) -> torch.device:
    """The explicit ``device`` if given, else the device of the first tensor among ``candidates``, else CPU."""
    if device is not None:
        return torch.device(device)
    for candidate in candidates:
        if isinstance(candidate, torch.Tensor):
            return candidate.device
    return torch.device("cpu")


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether every value is finite. A sum propagates NaN/inf and costs a tenth of ``isfinite``'s full-size
    bool pass; only a sum that is not finite (or overflowed) makes the exact check run."""
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())
