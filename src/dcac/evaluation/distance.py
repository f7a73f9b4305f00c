"""Query × gallery distances computed as one matrix product.

Both metrics are written as ``a @ b.T`` of *augmented* operands, so that a block of distances costs
exactly one GEMM and no extra passes over the (large) output:

* ``euclidean`` — squared Euclidean distance ``|q|² + |g|² − 2 q·g`` with
  ``a = [−2q, |q|², 1]`` and ``b = [g, 1, |g|²]``. On L2-normalised features it ranks exactly like
  cosine distance. Values are not clamped at zero: rounding can leave ~1e-7 negatives for
  near-duplicates, as in torchreid and CLIP-ReID.
* ``cosine`` — ``1 − q̂·ĝ`` with ``a = [−q̂, 1]`` and ``b = [ĝ, 1]`` (features normalised here, as the
  metric's definition requires).

The chunked evaluator (:func:`dcac.evaluation.evaluate_features`) uses the same operands per query
block, so it ranks the distances :func:`compute_distance` returns, up to the last bit of their rounding: BLAS
may round a dot product differently when the product is split into other blocks of rows or columns.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .inputs import as_feature_matrix, resolve_device

__all__ = ["METRICS", "compute_distance", "distance_matmul", "distance_operands", "l2_normalize"]

METRICS = ("euclidean", "cosine")


def l2_normalize(features: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (all-zero rows stay zero)."""
    return F.normalize(features, p=2.0, dim=1)


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {METRICS}, got {metric!r}")


def distance_operands(q_feats: torch.Tensor, g_feats: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented ``(a, b)`` with ``a @ b.T`` equal to the ``metric`` distance matrix."""
    check_metric(metric)
    q_ones = torch.ones(q_feats.shape[0], 1, dtype=q_feats.dtype, device=q_feats.device)
    g_ones = torch.ones(g_feats.shape[0], 1, dtype=g_feats.dtype, device=g_feats.device)
    if metric == "cosine":
        return (
            torch.cat([-l2_normalize(q_feats), q_ones], dim=1),
            torch.cat([l2_normalize(g_feats), g_ones], dim=1),
        )
    q_sq = (q_feats * q_feats).sum(dim=1, keepdim=True)
    g_sq = (g_feats * g_feats).sum(dim=1, keepdim=True)
    return torch.cat([-2.0 * q_feats, q_sq, q_ones], dim=1), torch.cat([g_feats, g_ones, g_sq], dim=1)


# Output columns per GEMM call on the CPU. MKL's sgemm runs this wide, flat product (an output thousands of columns
# wide, K = 514) at ~60 % of the rate it reaches on a square one; 512 columns per call, whose output fits in the
# cache, run at ~93 %. Measured on two EPYC cores: the Market-1501 product in 0.31 s instead of 0.45 s, an MSMT17
# block of 1,458 queries in 0.75 s instead of 0.95 s (256-1,024 columns are all as fast). Why MKL blocks the wide
# product so is not known here.
_CPU_GEMM_COLUMNS = 512
# With fewer rows slicing costs more than it saves (probably packing ``a`` again for every slice): 15-23 % slower
# at 8-32 rows, even at 64, 11-31 % faster from 96 rows up (measured at 15,913 and 82,161 columns).
_CPU_GEMM_MIN_ROWS = 64


def distance_matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` into ``out`` (``a`` and ``b`` augmented operands, ``out`` of shape ``(len(a), len(b))``).

    On the CPU, from :data:`_CPU_GEMM_MIN_ROWS` rows, the product is written in slices of
    :data:`_CPU_GEMM_COLUMNS` columns (see there why). Each entry is the same dot product, but BLAS may round it
    differently for another blocking (as for another number of rows), so the values can differ from one call's
    in the last bit.
    """
    if out.device.type != "cpu" or a.shape[0] < _CPU_GEMM_MIN_ROWS:
        return torch.mm(a, b.T, out=out)
    for start in range(0, b.shape[0], _CPU_GEMM_COLUMNS):
        stop = start + _CPU_GEMM_COLUMNS
        torch.mm(a, b[start:stop].T, out=out[:, start:stop])
    return out


def compute_distance(
    q_feats: Any,
    g_feats: Any,
    metric: str = "euclidean",
    *,
    normalize: bool = False,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Dense ``(num_query, num_gallery)`` distance matrix between two feature sets.

    ``normalize=True`` L2-normalises both feature sets first (it must be a real ``bool``).
    Accepts numpy arrays or torch tensors; returns a float32 tensor (float64 for float64 input).
    """
    q, g = feature_pair(q_feats, g_feats, normalize=normalize, device=device)
    a, b = distance_operands(q, g, metric)
    return a @ b.T


def feature_pair(
    q_feats: Any, g_feats: Any, *, normalize: bool, device: str | torch.device | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Query and gallery features as 2-D tensors of one dtype on the target device, checked and optionally
    L2-normalised (``normalize`` must be a real ``bool``: a truthy string must not silently normalise)."""
    if type(normalize) is not bool:
        raise TypeError(f"normalize: expected a bool, got {normalize!r} ({type(normalize).__name__})")
    target = resolve_device(device, q_feats, g_feats)
    q = as_feature_matrix(q_feats, "q_feats", target)
    g = as_feature_matrix(g_feats, "g_feats", target)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"q_feats and g_feats: feature dimensions differ ({q.shape[1]} vs {g.shape[1]})")
    if q.dtype != g.dtype:
        q, g = q.to(torch.float32), g.to(torch.float32)
    if normalize:
        q, g = l2_normalize(q), l2_normalize(g)
    return q, g
