"""Top-k retrieval: the gallery entries nearest to each query, without a dense query × gallery matrix.

Distances are squared Euclidean, the convention of evaluation: on L2-normalised features
``d(q, g) = ||q||² + ||g||² − 2 q·g = 2 − 2 cos(q, g)``, so the order equals the cosine order while the
reported numbers match what evaluation computes.  Queries are processed in chunks so the memory held at
once is ``chunk_size × len(gallery)`` floats, whatever the number of queries.

With ``rerank`` the distances are the k-reciprocal re-ranked ones (Zhong et al., CVPR 2017) computed by the
evaluation's own :func:`dcac.evaluation.rerank_sparse` on the same squared Euclidean distances, so a
re-ranked search ranks exactly as ``dcac eval --rerank`` scores.  Re-ranking looks at all queries and the
gallery together and returns a dense ``num_query × num_gallery`` matrix, so its memory grows with the
number of queries (see ``rerank_sparse`` for the rest).
"""

from __future__ import annotations

import torch

from dcac.evaluation.distance import compute_distance
from dcac.evaluation.rerank_params import RerankSpec, resolve_rerank
from dcac.evaluation.rerank_sparse import rerank_sparse

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
    rerank: RerankSpec | bool = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``topk`` nearest gallery entries of every query, nearest first.

    Returns ``(indices, distances)``, both of shape ``(num_queries, min(topk, num_gallery))``: ``indices``
    (int64) into the gallery and their squared Euclidean distances (float32).

    ``rerank``: ``None``/``False`` (plain distances), ``True`` (the paper's 20/6/0.3), a preset name
    (``"default"``, ``"dcac"``: 50/15/0.3), a ``(k1, k2, lambda_value)`` tuple, a dict or a
    :class:`~dcac.evaluation.RerankParams`; the distances returned are then the re-ranked ones.
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
    params = resolve_rerank("default" if rerank is True else (None if rerank is False else rerank))
    if params is not None:
        return _rerank_topk(query, gallery.to(query.device), params, k)
    gallery = gallery.to(query.device)
    indices, distances = [], []
    for start in range(0, query.shape[0], chunk_size):
        # The evaluation's own distances (not clamped), so a search ranks exactly as `dcac eval` scores.
        dist = compute_distance(query[start : start + chunk_size], gallery, "euclidean")
        chunk_dist, chunk_idx = torch.topk(dist, k, dim=1, largest=False, sorted=True)
        indices.append(chunk_idx)
        distances.append(chunk_dist)
    if not indices:
        return torch.empty(0, k, dtype=torch.long), torch.empty(0, k)
    return torch.cat(indices), torch.cat(distances)


def _rerank_topk(query: torch.Tensor, gallery: torch.Tensor, params, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    if query.shape[0] == 0:
        return torch.empty(0, k, dtype=torch.long), torch.empty(0, k)
    dist = rerank_sparse(query, gallery, params, metric="euclidean")
    distances, indices = torch.topk(dist, k, dim=1, largest=False, sorted=True)
    return indices, distances.float()
