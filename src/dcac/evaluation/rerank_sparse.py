"""Scalable k-reciprocal re-ranking: the mathematics of :func:`rerank_dense` on sparse neighbour sets.

Nothing of size ``N × N`` (N = queries + gallery) is ever held; at MSMT17 size (N = 93,820) the
dense algorithm would need several 35 GB matrices. The stages:

1. **Neighbours** — rows of the original distance are produced block by block (one GEMM each into one
   reused buffer, ``orig[:, rows]ᵀ``) with each column maximum, the published normalisation. The
   ``max(k1 + 1, k2)`` nearest (ties by index) are selected on the undivided block (dividing by a positive
   maximum never reorders, only ties; only the candidates are divided) from the minima of 32-column groups,
   so no selection runs over whole rows.
2. **Reciprocal sets** — pairs ``(i, j)`` are encoded as ``i·N + j``; "``i`` is among ``j``'s
   neighbours" becomes a ``searchsorted`` membership test in the forward pairs (sorted by sorting rows).
3. **Expansion** — for each ``c ∈ R(i)`` the overlap ``|H(c) ∩ R(i)|`` is a binary search of ``H(c)`` in
   ``R(i)`` sorted within its row; accepted sets are merged by sorting each row's candidates.
4. **Weights** — ``exp(−d)`` of the expanded pairs, recomputing each pair's distance as one dot
   product of the same GEMM operands, normalised per row: ``V`` as a sorted COO list.
5. **Local query expansion** — each row is the mean of its ``k2`` nearest neighbours' ``V`` rows,
   gathered from the CSR layout and summed per (row, column) key.
6. **Jaccard** — ``Σ_l min(V[i, l], V[j, l])`` for queries ``i`` and gallery ``j`` through an inverted
   index (gallery rows per column ``l``), accumulated into one query block at a time.

Memory is ``O(N · k1²)`` for the neighbour structures plus the ``num_query × num_gallery`` output;
:func:`rerank_sparse_blocks` yields that output a block of query rows at a time instead (what
``evaluate_features`` ranks, so that its peak at MSMT17 size stays far below the 3.6 GiB output).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from .distance import check_metric, distance_matmul, distance_operands
from .inputs import as_feature_matrix, resolve_device
from .rerank_dense import half_neighbourhood
from .rerank_params import RerankParams, RerankSpec, as_rerank_params

__all__ = ["rerank_sparse", "rerank_sparse_blocks"]

_BLOCK_ELEMENTS = 1 << 25
_PAIR_BLOCK = 1 << 12
_TRIPLE_BLOCK = 1 << 25
_GROUP = 32  # columns per group in the top-k pre-selection


def _nearest_stable(raw: torch.Tensor, scale: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` smallest entries of each row of ``raw / scale[:, None]``, ordered by (value, index)
    like a stable argsort of the divided rows, dividing only the candidates when every ``scale`` is positive."""
    n = raw.shape[1]
    if k >= n or not bool((scale > 0).all()):
        return torch.argsort(raw / scale[:, None], dim=1, stable=True)[:, :k]
    # Division by a positive scale never reorders, it can only tie: the k + 1 smallest raw entries hold the
    # k + 1 smallest quotients, and a tie across the k-th boundary sends the row to a full stable sort.
    candidates = torch.sort(_smallest_columns(raw, k + 1), dim=1).values
    values = raw.gather(1, candidates).div_(scale[:, None])
    order = torch.argsort(values, dim=1, stable=True)
    sorted_values = values.gather(1, order[:, k - 1 : k + 1])
    nearest = candidates.gather(1, order[:, :k])
    tied_rows = torch.nonzero(sorted_values[:, 0] == sorted_values[:, 1]).squeeze(1)
    if tied_rows.numel():
        nearest[tied_rows] = torch.argsort(raw[tied_rows] / scale[tied_rows, None], dim=1, stable=True)[:, :k]
    return nearest


def _smallest_columns(raw: torch.Tensor, count: int) -> torch.Tensor:
    """Columns of ``count`` smallest entries of each row (ties in any order), without a top-k over whole rows.

    The row is cut into groups of ``_GROUP`` columns; the ``count`` smallest entries lie in the ``count`` groups
    with the smallest minima (any entry outside them has ``count`` group minima at or below it), plus the tail
    columns that fill no whole group. A top-k over the group minima, then over those candidates, is exact and
    reads each row once instead of running a selection over all of it.
    """
    rows, n = raw.shape
    groups = n // _GROUP
    if groups <= count:
        return torch.topk(raw, count, dim=1, largest=False, sorted=False).indices
    group_min = raw.as_strided((rows, groups, _GROUP), (raw.stride(0), _GROUP, 1)).amin(dim=2)
    best = torch.topk(group_min, count, dim=1, largest=False, sorted=False).indices
    columns = (best[:, :, None] * _GROUP + torch.arange(_GROUP, device=raw.device)).view(rows, -1)
    tail = torch.arange(groups * _GROUP, n, device=raw.device).expand(rows, -1)
    columns = torch.cat([columns, tail], dim=1)
    pick = torch.topk(raw.gather(1, columns), count, dim=1, largest=False, sorted=False).indices
    return columns.gather(1, pick)


def _is_member(sorted_keys: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    position = torch.searchsorted(sorted_keys, keys).clamp(max=sorted_keys.numel() - 1)
    return sorted_keys[position] == keys


def _reciprocal_mask(neighbours: torch.Tensor, k: int) -> torch.Tensor:
    """``(N, k)`` bool: is ``i`` also among the ``k`` nearest of its j-th neighbour?"""
    n = neighbours.shape[0]
    near = neighbours[:, :k]
    own = torch.arange(n, device=near.device)[:, None]
    # The rows come in order and a row's neighbours are distinct: sorting within rows sorts all the keys.
    forward_keys = (own * n + torch.sort(near, dim=1).values).flatten()
    return _is_member(forward_keys, near * n + own)


def _in_rows(sorted_rows: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``values[i, j] ∈ sorted_rows[i]``, one short binary search per value in its own row."""
    position = torch.searchsorted(sorted_rows, values).clamp_(max=sorted_rows.shape[1] - 1)
    return sorted_rows.gather(1, position) == values


def _row_unique(columns: torch.Tensor, n: int, first_row: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct entries below ``n`` of each row of ``columns`` as (row, column) pairs in (row, column) order:
    ``unique`` of the keys ``row·n + column`` by sorting short rows instead of one long key list."""
    columns = torch.sort(columns, dim=1).values
    keep = columns < n
    keep[:, 1:] &= columns[:, 1:] != columns[:, :-1]
    return torch.nonzero(keep)[:, 0] + first_row, columns[keep]


def _csr_pointers(row_of_entry: torch.Tensor, num_rows: int) -> torch.Tensor:
    counts = torch.bincount(row_of_entry, minlength=num_rows)
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])


def _gather_rows(pointers: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry positions of CSR ``rows`` (concatenated) and, for each, its position in ``rows``."""
    starts = pointers.index_select(0, rows)
    lengths = pointers.index_select(0, rows + 1) - starts
    index_dtype = pointers.dtype  # int32 pointers give int32 positions: half the memory traffic
    owner = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device, dtype=index_dtype), lengths)
    # entry position = start of its row + offset within the row = arange - (entries before the row)
    shift = (starts - (torch.cumsum(lengths, 0, dtype=index_dtype) - lengths)).index_select(0, owner)
    return torch.arange(owner.numel(), device=rows.device, dtype=index_dtype) + shift, owner


def rerank_sparse(
    q_feats: Any,
    g_feats: Any,
    params: RerankSpec = RerankParams(),
    *,
    metric: str = "euclidean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Re-ranked ``(num_query, num_gallery)`` distances; same result as :func:`rerank_dense`
    (to float rounding of the pairwise distances) in ``O(N)`` memory besides the output.
    ``chunk_size``: rows per distance block (default: ~32M distances per block)."""
    device = resolve_device(None, q_feats, g_feats)
    q = as_feature_matrix(q_feats, "q_feats", device)
    g = as_feature_matrix(g_feats, "g_feats", device).to(q.dtype)
    out = torch.empty(q.shape[0], g.shape[0], dtype=q.dtype, device=device)
    for start, block in rerank_sparse_blocks(q, g, params, metric=metric, chunk_size=chunk_size):
        out[start : start + block.shape[0]] = block
    return out


def rerank_sparse_blocks(
    q_feats: Any,
    g_feats: Any,
    params: RerankSpec = RerankParams(),
    *,
    metric: str = "euclidean",
    chunk_size: int | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """:func:`rerank_sparse`'s rows as ``(first query row, block of re-ranked rows)`` in query order, so that
    a caller that ranks each block (``evaluate_features``) never holds the ``num_query × num_gallery`` matrix."""
    params = as_rerank_params(params)
    check_metric(metric)
    device = resolve_device(None, q_feats, g_feats)
    q = as_feature_matrix(q_feats, "q_feats", device)
    g = as_feature_matrix(g_feats, "g_feats", device).to(q.dtype)
    num_query = q.shape[0]
    n = num_query + g.shape[0]
    a, b = distance_operands(torch.cat([q, g]), torch.cat([q, g]), metric)
    step = chunk_size if chunk_size is not None else max(16, _BLOCK_ELEMENTS // n)
    k_forward = min(params.k1 + 1, n)
    k_half = min(half_neighbourhood(params.k1) + 1, n)
    k_keep = max(k_forward, min(params.k2, n))

    neighbours, col_max = _neighbours(a, b, k_keep, step)
    pair_row, pair_col = _expanded_pairs(neighbours, k_forward, k_half)
    v_row, v_col, v_val = _pair_weights(a, b, col_max, pair_row, pair_col)
    if params.k2 != 1:
        v_row, v_col, v_val = _local_query_expansion(neighbours, v_row, v_col, v_val, min(params.k2, n))
    yield from _jaccard_blend(a, b, col_max, v_row, v_col, v_val, num_query, params.lambda_value)


def _neighbours(a: torch.Tensor, b: torch.Tensor, k_keep: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 1: the ``k_keep`` nearest of every row of the normalised original distance, and each column maximum."""
    n = a.shape[0]
    col_max = torch.empty(n, dtype=a.dtype, device=a.device)
    neighbours = torch.empty(n, k_keep, dtype=torch.int64, device=a.device)
    # One reused block: a fresh one per GEMM would pay its page faults every time.
    buffer = torch.empty(min(step, n), n, dtype=a.dtype, device=a.device)
    for s in range(0, n, step):
        block = distance_matmul(b[s : s + step], a, out=buffer[: min(step, n - s)])  # block[i, x] = orig[x, s + i]
        torch.amax(block, dim=1, out=col_max[s : s + step])
        neighbours[s : s + step] = _nearest_stable(block, col_max[s : s + step], k_keep)
    return neighbours, col_max


def _expanded_pairs(neighbours: torch.Tensor, k_forward: int, k_half: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stages 2-3: the (row, column) pairs of the expanded reciprocal sets.

    R(i) are the reciprocal ``k1 + 1`` neighbours, H(c) the reciprocal ``round(k1/2) + 1`` ones; ``c ∈ R(i)``
    adds H(c) when ``3·|H(c) ∩ R(i)| > 2·|H(c)|``.
    """
    n = neighbours.shape[0]
    near = neighbours[:, :k_forward]
    recip = _reciprocal_mask(neighbours, k_forward)
    recip_half = _reciprocal_mask(neighbours, k_half)
    half = neighbours[:, :k_half]
    half_size = recip_half.sum(dim=1)
    # R(i) sorted within its row (n where not reciprocal): "x ∈ R(i)" searches i's own k_forward entries.
    recip_sorted = torch.sort(torch.where(recip, near, n), dim=1).values
    pair_rows, pair_cols = [], []
    rows_per_block = max(1, _BLOCK_ELEMENTS // (4 * k_forward * k_half))
    for s in range(0, n, rows_per_block):
        cand = near[s : s + rows_per_block]
        num_rows, flat_cand = cand.shape[0], cand.reshape(-1)
        cand_half = half.index_select(0, flat_cand).view(num_rows, k_forward, k_half)
        cand_half_ok = recip_half.index_select(0, flat_cand).view(num_rows, k_forward, k_half)
        in_r = _in_rows(recip_sorted[s : s + num_rows], cand_half.view(num_rows, -1)).view_as(cand_half)
        cand_size = half_size.index_select(0, flat_cand).view(cand.shape)
        accepted = recip[s : s + num_rows] & (3 * (in_r & cand_half_ok).sum(dim=2) > 2 * cand_size)
        columns = torch.cat(
            [
                torch.where(recip[s : s + num_rows], cand, n),
                torch.where(accepted[:, :, None] & cand_half_ok, cand_half, n).view(num_rows, -1),
            ],
            dim=1,
        )
        rows, cols = _row_unique(columns, n, s)
        pair_rows.append(rows)
        pair_cols.append(cols)
    return torch.cat(pair_rows), torch.cat(pair_cols)


def _pair_weights(a, b, col_max, pair_row, pair_col) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage 4: ``V[i, x] = exp(-orig_n[i, x])`` normalised over the row, with ``orig_n[i, x] = orig[x, i] / col_max[i]``."""
    dist = torch.empty(pair_row.numel(), dtype=a.dtype, device=a.device)
    # Small reused gather buffers: they stay in cache, and fresh large ones would pay page faults per block.
    rows_a, rows_b = torch.empty(2, min(_PAIR_BLOCK, pair_row.numel()), a.shape[1], dtype=a.dtype, device=a.device)
    for s in range(0, pair_row.numel(), _PAIR_BLOCK):
        r, c = pair_row[s : s + _PAIR_BLOCK], pair_col[s : s + _PAIR_BLOCK]
        product = torch.index_select(a, 0, c, out=rows_a[: r.numel()])
        product.mul_(torch.index_select(b, 0, r, out=rows_b[: r.numel()]))
        torch.sum(product, dim=1, out=dist[s : s + r.numel()])
        dist[s : s + r.numel()] /= col_max.index_select(0, r)
    weight = torch.exp(-dist)
    del dist
    row_sum = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device).index_add_(0, pair_row, weight)
    return pair_row, pair_col, weight / row_sum.index_select(0, pair_row)


def _local_query_expansion(neighbours, v_row, v_col, v_val, k2: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage 5: row ``i`` of V becomes the mean of the rows of its ``k2`` nearest neighbours."""
    n, device = neighbours.shape[0], neighbours.device
    pointers = _csr_pointers(v_row, n)
    rows_qe, cols_qe, vals_qe = [], [], []
    avg_len = max(1, v_row.numel() // n)
    qe_step = max(1, _TRIPLE_BLOCK // (k2 * avg_len * 4))
    for s in range(0, n, qe_step):
        sources = neighbours[s : s + qe_step, :k2]
        entries, owner = _gather_rows(pointers, sources.flatten())
        target_row = s + owner // k2
        keys, inverse = torch.unique(target_row * n + v_col.index_select(0, entries), return_inverse=True)
        sums = torch.zeros(keys.numel(), dtype=v_val.dtype, device=device)
        sums.index_add_(0, inverse, v_val.index_select(0, entries))
        rows_qe.append(keys // n)
        cols_qe.append(keys % n)
        vals_qe.append(sums / k2)
    return torch.cat(rows_qe), torch.cat(cols_qe), torch.cat(vals_qe)


def _jaccard_blend(
    a, b, col_max, v_row, v_col, v_val, num_query: int, lam: float
) -> Iterator[tuple[int, torch.Tensor]]:
    """Stage 6: ``(1 - λ)·Jaccard + λ·original`` for every (query, gallery) pair, yielded one query block at a time.

    The Jaccard overlap ``Σ_l min(V[i, l], V[j, l])`` runs through an inverted index of the gallery rows.
    """
    n, device = a.shape[0], a.device
    num_gallery = n - num_query
    is_gallery = v_row >= num_query
    by_col = torch.argsort(v_col[is_gallery], stable=True)
    # Positions and targets in int32 where they fit: the triples are the largest arrays of this stage.
    index_dtype = torch.int32 if v_row.numel() < 2**31 and num_gallery < 2**31 else torch.int64
    inv_row = (v_row[is_gallery][by_col] - num_query).to(index_dtype)
    inv_val = v_val[is_gallery][by_col]
    inv_pointers = _csr_pointers(v_col[is_gallery], n).to(index_dtype)
    query_pointers = _csr_pointers(v_row[~is_gallery], num_query)  # v is sorted by row
    q_row, q_col, q_val = v_row[~is_gallery], v_col[~is_gallery], v_val[~is_gallery]
    posting_len = (inv_pointers[1:] - inv_pointers[:-1]).long()
    triples_per_query = torch.zeros(num_query, dtype=torch.int64, device=device).index_add_(
        0, q_row, posting_len.index_select(0, q_col)
    )
    gallery_a = a[num_query:]
    rows_cap = max(1, _BLOCK_ELEMENTS // num_gallery)
    # Two reused scratch blocks (the original distances, the Jaccard denominator): fresh ones would pay their
    # page faults every block. The yielded block itself is fresh, as a caller may keep it.
    scratch = torch.empty(2, min(rows_cap, num_query), num_gallery, dtype=a.dtype, device=device)
    s = 0
    while s < num_query:
        # grow the block while its triples and its dense rows stay within budget
        budget = torch.cumsum(triples_per_query[s:], 0)
        stop = s + max(1, min(int((budget <= _TRIPLE_BLOCK).sum()), rows_cap))
        first, last = int(query_pointers[s]), int(query_pointers[stop])
        postings, which = _gather_rows(inv_pointers, q_col[first:last])
        row_base = (q_row[first:last] - s).mul_(num_gallery).to(index_dtype)  # < (stop - s)·num_gallery
        target = row_base.index_select(0, which) + inv_row.index_select(0, postings)
        overlap = torch.minimum(q_val[first:last].index_select(0, which), inv_val.index_select(0, postings))
        mass = torch.zeros((stop - s) * num_gallery, dtype=a.dtype, device=device)
        mass.index_add_(0, target, overlap)
        del postings, which, target, overlap
        original = distance_matmul(b[s:stop], gallery_a, out=scratch[0, : stop - s]).div_(col_max[s:stop, None])
        yield s, _blend(mass.view(stop - s, num_gallery), original, scratch[1, : stop - s], lam)
        s = stop


def _blend(mass: torch.Tensor, original: torch.Tensor, scratch: torch.Tensor, lam: float) -> torch.Tensor:
    """``(1 − mass / (2 − mass))·(1 − λ) + original·λ`` in place in ``mass`` (``original`` and ``scratch`` are
    overwritten): each operation rounds exactly as the out-of-place expression, without its five temporaries."""
    torch.sub(mass.new_tensor(2.0), mass, out=scratch)
    mass.div_(scratch)
    torch.sub(mass.new_tensor(1.0), mass, out=mass)
    return mass.mul_(1 - lam).add_(original.mul_(lam))
