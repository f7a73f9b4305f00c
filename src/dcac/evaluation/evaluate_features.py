"""End-to-end evaluation from features, never holding the full query × gallery distance matrix.

Queries are processed in blocks: one GEMM of augmented operands gives the block's distances
(:mod:`dcac.evaluation.distance`), :func:`match_ranks` turns them into the ranks of the true matches
by counting (no sort), and a :class:`RankAccumulator` folds them into CMC / mAP / mINP. Peak memory is
the features plus one ``chunk_size × num_gallery`` block and the candidate temporaries of one
slice of it (on the CPU in float32: of a few rows per ranking thread). The GEMM uses torch's
intra-op threads, the ranking a pool of as many threads (:func:`match_ranks`); tensors on CUDA (or
``device="cuda"``) run there.

With ``rerank`` set, k-reciprocal re-ranking (:func:`rerank_sparse_blocks`) yields the re-ranked
query × gallery distances a block of query rows at a time and each block is ranked as it comes, so
this path never holds the full matrix either.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .distance import check_metric, distance_matmul, distance_operands, feature_pair
from .inputs import all_finite, as_label_vector
from .match_ranks import GalleryIndex
from .rank_metrics import RankAccumulator, default_rank_chunk, rank_block
from .rerank_params import RerankSpec, resolve_rerank
from .rerank_sparse import rerank_sparse_blocks

__all__ = ["evaluate_features", "default_feature_chunk"]

# Most distances per GEMM block: ~128M floats (512 MiB) keeps the peak at MSMT17 size near 1.2 GiB. A block
# is ranked in row slices of default_rank_chunk() so that the candidate temporaries stay bounded even when
# every gallery entry is a candidate (float32 on the CPU bounds them per task instead, and ranks the whole
# block at once).
_BLOCK_ELEMENTS = 1 << 27


def default_feature_chunk(num_query: int, num_gallery: int, dim: int) -> int:
    """Queries per GEMM block: about ``sqrt(num_query * dim)`` rows, at most ~128M distances, blocks of equal size.

    Each block re-reads (and the GEMM re-packs) the whole ``num_gallery x dim`` gallery operand, so more
    blocks cost ``~ num_query / rows * num_gallery * dim``; the block buffer is page-faulted in and freed
    once, which costs ``~ rows * num_gallery``. The two balance at ``rows = sqrt(num_query * dim)``, assuming
    a byte of either costs about the same (measured on two EPYC cores: 0.2 ms per MiB re-read, 0.3 ms per
    MiB faulted and freed). At Market-1501 size that is 3 blocks rather than one (GEMM, faults and free 6 %
    faster); at MSMT17 size the memory bound decides.
    """
    cap = max(16, _BLOCK_ELEMENTS // max(num_gallery, 1))
    rows = min(max(16, math.isqrt(num_query * dim)), cap)
    blocks = max(1, -(-num_query // rows))
    return max(1, -(-num_query // blocks))


def evaluate_features(
    q_feats: Any,
    g_feats: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    metric: str = "euclidean",
    max_rank: int = 50,
    rerank: RerankSpec = None,
    *,
    normalize: bool = False,
    device: str | torch.device | None = None,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """CMC / mAP / mINP of query features against gallery features; same mapping as :func:`evaluate_rank`.

    ``metric``: ``"euclidean"`` (squared Euclidean between the given features) or ``"cosine"``.
    ``normalize``: L2-normalise both feature sets first (a real ``bool``; pass ``True`` unless the
    caller already normalised). ``rerank``: ``None`` (off), a :class:`RerankParams`, a preset name
    from ``RERANK_PRESETS`` (``"default"``/``"zhong"`` = 20/6/0.3, ``"dcac"`` = 50/15/0.3), a
    ``(k1, k2, lambda_value)`` tuple or a dict with those keys. ``device``: where to compute (default:
    the device of ``q_feats``). ``chunk_size``: queries per GEMM block (default: :func:`default_feature_chunk`).
    The result equals ``evaluate_rank(compute_distance(q, g, metric), ...)``: ties are ordered by
    gallery index (distances equal up to their last bit; see :mod:`dcac.evaluation.distance`).
    """
    check_metric(metric)
    params = resolve_rerank(rerank)
    q, g = feature_pair(q_feats, g_feats, normalize=normalize, device=device)
    target = q.device
    qp = as_label_vector(q_pids, "q_pids", q.shape[0], target)
    gp = as_label_vector(g_pids, "g_pids", g.shape[0], target)
    qc = as_label_vector(q_camids, "q_camids", q.shape[0], target)
    gc = as_label_vector(g_camids, "g_camids", g.shape[0], target)
    step = chunk_size if chunk_size is not None else default_feature_chunk(q.shape[0], g.shape[0], q.shape[1])
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")

    gallery = GalleryIndex.build(gp, gc)
    accumulator = RankAccumulator(max_rank, target)
    rank_step = default_rank_chunk(g.shape[0])
    if params is not None:
        _rank_reranked(
            rerank_sparse_blocks(q, g, params, metric=metric, chunk_size=chunk_size), qp, qc, gallery, accumulator
        )
        return accumulator.result()

    q_operand, g_operand = distance_operands(q, g, metric)
    # One reused output buffer: a fresh 512 MiB block per GEMM would pay its page faults every time.
    buffer = torch.empty(min(step, q.shape[0]), g.shape[0], dtype=q.dtype, device=target)
    for start in range(0, q.shape[0], step):
        stop = min(start + step, q.shape[0])
        block = distance_matmul(q_operand[start:stop], g_operand, out=buffer[: stop - start])
        rank_block(accumulator, block, qp[start:stop], qc[start:stop], gallery, rank_step)
    del buffer
    return accumulator.result()


def _rank_reranked(blocks, qp, qc, gallery: GalleryIndex, accumulator: RankAccumulator) -> None:
    """Rank each block of re-ranked rows as it comes: the full re-ranked matrix (3.6 GiB at MSMT17 size) is never held."""
    rank_step = default_rank_chunk(gallery.pids.numel())
    for start, block in blocks:
        if not all_finite(block):
            raise ValueError(f"rerank: query rows {start}.. got NaN or infinite re-ranked distances")
        rows = slice(start, start + block.shape[0])
        rank_block(accumulator, block, qp[rows], qc[rows], gallery, rank_step)
