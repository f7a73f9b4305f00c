"""Top-k retrieval: the gallery entries nearest to each query, without a dense query × gallery matrix.

Distances are squared Euclidean, the convention of evaluation (DESIGN §1.1): on L2-normalised features
``d(q, g) = ||q||² + ||g||² − 2 q·g = 2 − 2 cos(q, g)``, so the order equals the cosine order while the
reported numbers match what evaluation computes.  Queries are processed in chunks so the memory held at
once is ``chunk_size × len(gallery)`` floats, whatever the number of queries.
"""

from __future__ import annotations

import torch

DEFAULT_CHUNK_SIZE = 1024


def _as_matrix(feats: torch.Tensor, name: str) -> torch.Tensor:
    feats = torch.as_tensor(feats)
    if feats.dim() != 2:
        raise ValueError(f"{name} must be a 2-D (num_images, dim) tensor, got shape {tuple(feats.shape)}")
    if not feats.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {feats.dtype}")
    # Half-precision dot products lose the small distance differences that decide a ranking.
    return feats.float()


def rank(
    query_feats: torch.Tensor,
    gallery_feats: torch.Tensor,
    topk: int = 10,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``topk`` nearest gallery entries of every query, nearest first.

    Returns ``(indices, distances)``, both of shape ``(num_queries, min(topk, num_gallery))``: ``indices``
    (int64) into the gallery and their squared Euclidean distances (float32).
    """
    query = _as_matrix(query_feats, "query_feats")
    gallery = _as_matrix(gallery_feats, "gallery_feats")
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query features are {query.shape[1]}-d but gallery features are {gallery.shape[1]}-d")
    if gallery.shape[0] == 0:
        raise ValueError("the gallery is empty: nothing to rank")
    if topk < 1:
        raise ValueError(f"topk must be at least 1, got {topk}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    k = min(topk, gallery.shape[0])
    gallery = gallery.to(query.device)
    gallery_sq = gallery.pow(2).sum(dim=1)
    indices, distances = [], []
    for start in range(0, query.shape[0], chunk_size):
        chunk = query[start : start + chunk_size]
        dist = chunk.pow(2).sum(dim=1, keepdim=True) + gallery_sq.unsqueeze(0) - 2.0 * chunk @ gallery.T
        # Rounding can push the distance of identical vectors slightly below zero.
        dist.clamp_(min=0.0)
        chunk_dist, chunk_idx = torch.topk(dist, k, dim=1, largest=False, sorted=True)
        indices.append(chunk_idx)
        distances.append(chunk_dist)
    if not indices:
        return torch.empty(0, k, dtype=torch.long), torch.empty(0, k)
    return torch.cat(indices), torch.cat(distances)
