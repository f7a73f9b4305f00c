"""CMC, mAP and mINP from ranked distances (the standard Re-ID protocol).

Definitions (torchreid's, per valid query; all averaged over valid queries):

* the gallery is ordered by distance with ties broken by gallery index (a stable argsort);
  entries with the query's identity and camera are removed; a *valid* query has at least one
  remaining entry of its identity (a *match*), other queries are skipped and counted;
* CMC at rank k (1-based, k = 1..max_rank): the fraction of valid queries whose first match is at
  position ≤ k. A query with fewer than ``max_rank`` valid gallery entries keeps CMC = 1 beyond its
  last entry (its curve has already reached 1 there);
* AP: mean over the query's matches of precision at each match, ``(i + 1) / (rank_i + 1)``;
* INP: ``num_matches / (rank_of_last_match + 1)`` (Ye et al., mINP).

Identity 0 (distractors) is an ordinary identity that queries never have; junk images (id −1)
must already have been removed by the dataset code.
"""

from __future__ import annotations

from typing import Any

import torch

from .inputs import all_finite, as_label_vector, as_tensor
from .match_ranks import GalleryIndex, MatchRanks, fused_cpu_path, match_ranks, max_block_rows

__all__ = ["RankAccumulator", "evaluate_rank", "default_rank_chunk", "rank_block"]

# Rows of a precomputed distance matrix ranked at once: bounds the candidate temporaries.
_RANK_CHUNK_ELEMENTS = 1 << 24


def default_rank_chunk(num_gallery: int) -> int:
    return max(1, min(_RANK_CHUNK_ELEMENTS // max(num_gallery, 1), max_block_rows(torch.float32, num_gallery)))


class RankAccumulator:
    """Accumulates per-query match ranks (block by block) into CMC / mAP / mINP."""

    def __init__(self, max_rank: int, device: torch.device) -> None:
        if isinstance(max_rank, bool) or not isinstance(max_rank, int) or max_rank < 1:
            raise ValueError(f"max_rank: expected a positive int, got {max_rank!r}")
        self.max_rank = max_rank
        self._first_match_hist = torch.zeros(max_rank + 1, dtype=torch.int64, device=device)
        self._ap_sum = torch.zeros((), dtype=torch.float64, device=device)
        self._inp_sum = torch.zeros((), dtype=torch.float64, device=device)
        self._num_valid = 0
        self._num_skipped = 0

    def add(self, block: MatchRanks) -> None:
        valid = block.num_matches > 0
        num_valid = int(valid.sum())
        self._num_valid += num_valid
        self._num_skipped += int(valid.numel()) - num_valid
        if num_valid == 0:
            return
        ranks = block.ranks[valid].to(torch.float64)
        num = block.num_matches[valid]
        width = ranks.shape[1]
        position = torch.arange(1, width + 1, dtype=torch.float64, device=ranks.device)
        present = position[None, :] <= num[:, None]
        precision = torch.where(present, position / (ranks + 1.0), torch.zeros_like(ranks))
        self._ap_sum += (precision.sum(dim=1) / num).sum()
        last = ranks.gather(1, (num - 1)[:, None]).squeeze(1)
        self._inp_sum += (num / (last + 1.0)).sum()
        first = block.ranks[valid][:, 0].clamp(max=self.max_rank)
        self._first_match_hist += torch.bincount(first, minlength=self.max_rank + 1)

    def result(self) -> dict[str, Any]:
        if self._num_valid == 0:
            raise ValueError(
                f"evaluation: none of the {self._num_skipped} queries has a valid gallery match "
                "(same identity, different camera)"
            )
        cmc = torch.cumsum(self._first_match_hist[: self.max_rank], 0).to(torch.float64) / self._num_valid
        return {
            "cmc": cmc.cpu().numpy(),
            "mAP": float(self._ap_sum) / self._num_valid,
            "mINP": float(self._inp_sum) / self._num_valid,
            "num_valid_queries": self._num_valid,
            "num_skipped_queries": self._num_skipped,
        }


def rank_block(
    accumulator: RankAccumulator,
    dist: torch.Tensor,
    q_pids: torch.Tensor,
    q_camids: torch.Tensor,
    gallery: GalleryIndex,
    step: int,
) -> None:
    """Rank the rows of ``dist`` and add them to ``accumulator`` in slices of ``step`` rows.

    The general path ranks one slice per :func:`match_ranks` call, which bounds its candidate
    temporaries. The fused CPU path bounds them per task, so it takes as many slices per call as its
    keys allow: each call ends in one thread-pool phase. The sums are added slice by slice either
    way, so the float metrics are the same, bit for bit, as when every slice was its own call."""
    rows = dist.shape[0]
    per_call = step
    if fused_cpu_path(dist.dtype, dist.device):
        per_call = max(1, max_block_rows(dist.dtype, dist.shape[1]) // step) * step
    for call in range(0, rows, per_call):
        ranks = match_ranks(
            dist[call : call + per_call], q_pids[call : call + per_call], q_camids[call : call + per_call], gallery
        )
        for s in range(0, ranks.num_matches.numel(), step):
            accumulator.add(MatchRanks(ranks.ranks[s : s + step], ranks.num_matches[s : s + step]))


def evaluate_rank(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    max_rank: int = 50,
    *,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """CMC / mAP / mINP of a ``(num_query, num_gallery)`` distance matrix (numpy or torch).

    Returns ``{"cmc": float64 array (max_rank,), "mAP": float, "mINP": float,
    "num_valid_queries": int, "num_skipped_queries": int}``; metrics are fractions in [0, 1].
    Equal distances are ordered by gallery index (as a stable argsort). Raises ``ValueError`` on
    shape mismatches, non-finite distances, or when no query has a valid match. The work runs on
    the device of ``distmat`` in blocks of ``chunk_size`` queries (default: sized for ~16M entries).
    """
    dist = as_tensor(distmat, "distmat")
    if dist.dim() != 2:
        raise ValueError(f"distmat: expected a 2-D (num_query, num_gallery) matrix, got shape {tuple(dist.shape)}")
    if not dist.dtype.is_floating_point:
        dist = dist.to(torch.float64)
    num_query, num_gallery = dist.shape
    device = dist.device
    qp = as_label_vector(q_pids, "q_pids", num_query, device)
    gp = as_label_vector(g_pids, "g_pids", num_gallery, device)
    qc = as_label_vector(q_camids, "q_camids", num_query, device)
    gc = as_label_vector(g_camids, "g_camids", num_gallery, device)
    if num_query == 0 or num_gallery == 0:
        raise ValueError(f"distmat: expected at least one query and one gallery entry, got shape {tuple(dist.shape)}")
    step = chunk_size if chunk_size is not None else default_rank_chunk(num_gallery)
    if step < 1:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
    step = min(step, max_block_rows(dist.dtype, num_gallery))

    gallery = GalleryIndex.build(gp, gc)
    accumulator = RankAccumulator(max_rank, device)
    for start in range(0, num_query, step):
        block = dist[start : start + step]
        if not all_finite(block):
            raise ValueError(f"distmat: rows {start}..{start + block.shape[0] - 1} contain NaN or infinite distances")
        accumulator.add(match_ranks(block, qp[start : start + step], qc[start : start + step], gallery))
    return accumulator.result()
