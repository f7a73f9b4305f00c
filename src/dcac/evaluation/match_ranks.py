"""Rank of every true match of a block of queries, without sorting the gallery.

The evaluation rule (torchreid's, and the one every Re-ID paper reports): for a query, gallery
entries with the query's identity *and* camera are ignored ("junk"); the remaining entries are
ordered by distance, ties broken by gallery index (a stable argsort); a *match* is a remaining
entry with the query's identity. CMC, AP and INP depend only on the 0-based positions
("ranks") of the matches in that ordering, and the rank of a match is simply the number of
valid entries that precede it — so no row is ever sorted.

How a block is ranked, for ``B`` queries and ``G`` gallery entries:

1. The gallery entries of each query's identity come from :class:`GalleryIndex` (a CSR of the
   gallery grouped by identity), so matches and junk are found without a ``B × G`` label compare.
2. Match distances are sorted per query by (distance, gallery index): tiny ``B × M`` rows.
3. Only entries no farther than the query's worst match can precede a match. One compare +
   ``nonzero`` pass finds these *candidates*; with real features they are a few percent of the
   gallery, for structureless features all of it (still exact, just slower).
4. Each candidate gets the number of matches that precede it: candidates and matches are encoded
   as int64 keys ``(row << 32) | order-preserving bits of the float32 distance``, so one flat
   ``searchsorted`` serves the whole block. A candidate whose key equals a match key (every match
   equals itself; float64 inputs that round to the same float32) is resolved exactly by comparing
   (distance, gallery index) with the original values.
5. Junk entries (same identity and camera) are candidates too; their counts are subtracted,
   computed on the small per-identity set instead of testing every candidate's labels.
6. A histogram of those counts, cumulated, gives each match's rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["GalleryIndex", "MatchRanks", "match_ranks"]

# Tied candidates are compared against all of their query's matches at once; this bounds the
# size of that (candidates × matches) comparison.
_TIE_BLOCK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class GalleryIndex:
    """Gallery labels plus the gallery grouped by identity (ascending gallery index within a group)."""

    pids: torch.Tensor
    camids: torch.Tensor
    order: torch.Tensor
    group_pids: torch.Tensor
    group_starts: torch.Tensor
    group_sizes: torch.Tensor

    @classmethod
    def build(cls, pids: torch.Tensor, camids: torch.Tensor) -> "GalleryIndex":
        order = torch.argsort(pids, stable=True)
        group_pids, group_sizes = torch.unique_consecutive(pids[order], return_counts=True)
        group_starts = torch.cumsum(group_sizes, 0) - group_sizes
        return cls(pids, camids, order, group_pids, group_starts, group_sizes)

    def same_identity(self, q_pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gallery indices with each query's identity, padded: ``(indices (B, S), present (B, S))``."""
        slot = torch.searchsorted(self.group_pids, q_pids).clamp(max=self.group_pids.numel() - 1)
        found = self.group_pids[slot] == q_pids
        sizes = torch.where(found, self.group_sizes[slot], torch.zeros_like(q_pids))
        width = max(int(sizes.max()), 1)
        offsets = torch.arange(width, device=q_pids.device)
        present = offsets < sizes[:, None]
        positions = (self.group_starts[slot][:, None] + offsets).clamp(max=self.order.numel() - 1)
        indices = torch.where(present, self.order[positions], torch.zeros_like(positions))
        return indices, present


@dataclass(frozen=True)
class MatchRanks:
    """Per query of a block: ``ranks[q, i]`` is the 0-based position of its i-th match among valid
    gallery entries (matches in ranking order); entries ``i >= num_matches[q]`` are meaningless."""

    ranks: torch.Tensor
    num_matches: torch.Tensor


def _sortable_keys(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """int64 keys ordering (row, float32(value)): the float bits, made monotone, below the row."""
    bits = (values.to(torch.float32) + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0
    bits ^= (bits >> 31) & 0x7FFFFFFF  # negative floats: reverse their magnitude order
    return (rows << 32) + bits  # int32 + int64 promotes; the row shift dominates the signed bits


def _preceding_matches(
    values: torch.Tensor,
    rows: torch.Tensor,
    cols_of: Callable[[torch.Tensor], torch.Tensor],
    match_keys: torch.Tensor,
    match_dist: torch.Tensor,
    match_idx: torch.Tensor,
) -> torch.Tensor:
    """For each entry (rows, values): the flat histogram slot ``row * (width + 1) + p`` where ``p``
    matches of its query precede it. ``cols_of(sel)`` gives the gallery index of entries ``sel``
    (only needed, and only computed, for entries tied with a match)."""
    width = match_dist.shape[1]
    keys = _sortable_keys(values, rows)
    flat_position = torch.searchsorted(match_keys, keys, right=True)
    previous = match_keys.index_select(0, (flat_position - 1).clamp_(min=0))
    tied = torch.nonzero((previous == keys).logical_and_(flat_position > rows * width)).squeeze(1)
    del keys, previous
    slot = flat_position.add_(rows)  # row * width + p  ->  row * (width + 1) + p
    block = max(1, _TIE_BLOCK_ELEMENTS // width)
    for start in range(0, tied.numel(), block):
        sel = tied[start : start + block]
        d_m, i_m = match_dist[rows[sel]], match_idx[rows[sel]]
        d_c, i_c = values[sel, None], cols_of(sel)[:, None]
        exact = ((d_m < d_c) | ((d_m == d_c) & (i_m < i_c))).sum(dim=1)
        slot[sel] = rows[sel] * (width + 1) + exact
    return slot


def match_ranks(
    dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor, gallery: GalleryIndex
) -> MatchRanks:
    """Ranks of the true matches of each query row of ``dist`` (finite distances, ``(B, G)``)."""
    num_queries, num_gallery = dist.shape
    device = dist.device
    same_idx, same_present = gallery.same_identity(q_pids)
    same_camera = gallery.camids[same_idx] == q_camids[:, None]
    is_match = same_present & ~same_camera
    num_matches = is_match.sum(dim=1)
    width = int(num_matches.max()) if num_queries else 0
    if width == 0:
        return MatchRanks(torch.zeros(num_queries, 0, dtype=torch.int64, device=device), num_matches)

    # Matches sorted by (distance, gallery index): same_idx is ascending, the sort is stable and
    # non-matches become +inf, which sorts after every finite distance.
    inf = torch.tensor(float("inf"), dtype=dist.dtype, device=device)
    same_dist = dist.gather(1, same_idx)
    match_dist, perm = torch.sort(torch.where(is_match, same_dist, inf), dim=1, stable=True)
    match_dist = match_dist[:, :width].contiguous()
    match_idx = same_idx.gather(1, perm)[:, :width]
    row_ids = torch.arange(num_queries, device=device)
    match_keys = _sortable_keys(match_dist, row_ids[:, None]).view(-1)

    worst = match_dist.gather(1, (num_matches - 1).clamp(min=0)[:, None]).squeeze(1)
    worst = torch.where(num_matches > 0, worst, -inf)
    dist = dist.contiguous()
    below = (dist <= worst[:, None]).view(-1)
    flat = torch.nonzero(below).squeeze(1)
    # flat is sorted, so each row's candidates form one run: their counts come from B searches.
    row_bounds = torch.searchsorted(flat, torch.arange(num_queries + 1, device=device) * num_gallery)
    rows = torch.repeat_interleave(row_ids, row_bounds.diff(), output_size=flat.numel())
    del below
    slots = _preceding_matches(
        dist.view(-1).index_select(0, flat), rows, lambda sel: flat[sel] % num_gallery,
        match_keys, match_dist, match_idx,
    )
    del flat, rows

    # Junk candidates (same identity and camera) are taken back out of the histogram.
    junk = same_present & same_camera & (same_dist <= worst[:, None])
    junk_rows, junk_slot = torch.nonzero(junk, as_tuple=True)
    junk_cols = same_idx[junk_rows, junk_slot]
    junk_slots = _preceding_matches(
        same_dist[junk_rows, junk_slot], junk_rows, lambda sel: junk_cols[sel], match_keys, match_dist, match_idx
    )

    # A valid candidate with `p` preceding matches precedes matches p, p+1, ...; so the number of
    # valid entries up to and including match i is the cumulated histogram of p at i.
    size = num_queries * (width + 1)
    hist = torch.bincount(slots, minlength=size) - torch.bincount(junk_slots, minlength=size)
    ranks = hist.view(num_queries, width + 1).cumsum(dim=1)[:, :width] - 1
    return MatchRanks(ranks, num_matches)
