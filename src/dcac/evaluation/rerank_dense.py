"""Exact k-reciprocal re-ranking with dense ``N × N`` matrices (N = queries + gallery).

The same mathematics as the published reference (Zhong et al., CVPR 2017, ``re_ranking``), each loop
replaced by a whole-matrix operation:

* original distance over all query + gallery features (``metric`` of :func:`compute_distance`),
  normalised as published: every column divided by its maximum, then transposed;
* initial ranks: a stable argsort of each row (ties by index; the reference's quicksort leaves them
  unspecified);
* k-reciprocal sets: ``j`` is in ``R(i)`` when each is among the other's ``k1 + 1`` nearest — the
  forward-neighbour indicator ANDed with its transpose;
* expansion: each ``c ∈ R(i)`` adds its ``round(k1/2)``-reciprocal set ``H(c)`` when
  ``|H(c) ∩ R(i)| > 2/3 |H(c)|`` (the overlaps of all pairs are one matrix product);
* ``V[i, j] = exp(−d_ij) / Σ`` over the expanded set; local query expansion averages the ``V`` rows
  of the ``k2`` nearest neighbours; Jaccard distance ``1 − Σ min / (2 − Σ min)``;
* ``final = λ·original + (1 − λ)·jaccard``, query × gallery block.

Memory is several ``N × N`` float32 matrices and the Jaccard step costs ``O(nq · ng · N)``: this is the
readable reference for small sets; :func:`rerank_sparse` is the scalable equivalent.
"""

from __future__ import annotations

from typing import Any

import torch

from .distance import check_metric, distance_operands
from .inputs import as_feature_matrix, resolve_device
from .rerank_params import RerankParams, RerankSpec, as_rerank_params

__all__ = ["rerank_dense", "half_neighbourhood"]

_JACCARD_BLOCK_ELEMENTS = 1 << 24


def half_neighbourhood(k1: int) -> int:
    """Size of the expansion candidates' neighbourhood: ``round(k1 / 2)`` as numpy rounds (half to even)."""
    return int(round(k1 / 2.0))


def _reciprocal(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """``(N, N)`` bool: ``j`` among the ``k`` nearest of ``i`` and ``i`` among the ``k`` nearest of ``j``."""
    n = ranks.shape[0]
    forward = torch.zeros(n, n, dtype=torch.bool, device=ranks.device)
    forward.scatter_(1, ranks[:, :k], True)
    return forward & forward.T


def rerank_dense(
    q_feats: Any, g_feats: Any, params: RerankSpec = RerankParams(), *, metric: str = "euclidean"
) -> torch.Tensor:
    """Re-ranked ``(num_query, num_gallery)`` distances, computed with dense matrices."""
    params = as_rerank_params(params)
    check_metric(metric)
    device = resolve_device(None, q_feats, g_feats)
    q = as_feature_matrix(q_feats, "q_feats", device)
    g = as_feature_matrix(g_feats, "g_feats", device).to(q.dtype)
    num_query = q.shape[0]
    feats = torch.cat([q, g])
    a, b = distance_operands(feats, feats, metric)
    original = a @ b.T
    original = (original / original.max(dim=0).values).T

    ranks = torch.argsort(original, dim=1, stable=True)
    recip = _reciprocal(ranks, params.k1 + 1)
    recip_half = _reciprocal(ranks, half_neighbourhood(params.k1) + 1)
    recip_f, half_f = recip.to(original.dtype), recip_half.to(original.dtype)
    overlap = recip_f @ half_f.T  # overlap[i, c] = |R(i) ∩ H(c)|, exact small integers
    accepted = recip & (3 * overlap > 2 * half_f.sum(dim=1)[None, :])
    expanded = recip | ((accepted.to(original.dtype) @ half_f) > 0)

    weights = torch.where(expanded, torch.exp(-original), torch.zeros_like(original))
    v = weights / weights.sum(dim=1, keepdim=True)
    if params.k2 != 1:
        nearest = ranks[:, : params.k2]
        step = max(1, _JACCARD_BLOCK_ELEMENTS // (params.k2 * v.shape[1]))
        v = torch.cat([v[nearest[s : s + step]].mean(dim=1) for s in range(0, v.shape[0], step)])

    v_query, v_gallery = v[:num_query], v[num_query:]
    step = max(1, _JACCARD_BLOCK_ELEMENTS // max(1, v_gallery.numel()))
    overlap_mass = torch.cat(
        [torch.minimum(v_query[s : s + step, None, :], v_gallery[None]).sum(dim=2) for s in range(0, num_query, step)]
    )
    jaccard = 1 - overlap_mass / (2.0 - overlap_mass)
    return jaccard * (1 - params.lambda_value) + original[:num_query, num_query:] * params.lambda_value
