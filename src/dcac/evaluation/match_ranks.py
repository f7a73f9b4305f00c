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
4. For every candidate, ``searchsorted`` in its query's sorted match distances gives how many
   matches strictly precede it; candidates whose distance equals a match distance (including the
   matches themselves) are resolved exactly by comparing (distance, index) pairs.
5. A histogram of those counts, cumulated, gives each match's rank.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def match_ranks(
    dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor, gallery: GalleryIndex
) -> MatchRanks:
    """Ranks of the true matches of each query row of ``dist`` (finite distances, ``(B, G)``)."""
    num_queries = dist.shape[0]
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
    match_dist, perm = torch.sort(torch.where(is_match, dist.gather(1, same_idx), inf), dim=1, stable=True)
    match_dist = match_dist[:, :width].contiguous()
    match_idx = same_idx.gather(1, perm)[:, :width]

    worst = match_dist.gather(1, (num_matches - 1).clamp(min=0)[:, None]).squeeze(1)
    worst = torch.where(num_matches > 0, worst, -inf)
    rows, cols = torch.nonzero(dist <= worst[:, None], as_tuple=True)
    junk = (gallery.pids[cols] == q_pids[rows]) & (gallery.camids[cols] == q_camids[rows])
    keep = ~junk
    rows, cols = rows[keep], cols[keep]
    values = dist[rows, cols]

    # searchsorted needs one row of candidates per query: lay them out left-aligned, padded.
    per_row = torch.bincount(rows, minlength=num_queries)
    slot = torch.arange(rows.numel(), device=device) - (torch.cumsum(per_row, 0) - per_row)[rows]
    padded = torch.full((num_queries, int(per_row.max())), float("inf"), dtype=dist.dtype, device=device)
    padded[rows, slot] = values
    at_most = torch.searchsorted(match_dist, padded, right=True)[rows, slot]
    del padded

    # Matches preceding a candidate = matches with distance <= it, unless it ties a match distance,
    # where the gallery index decides. Every match ties itself, so it always takes this path.
    largest_below = match_dist[rows, (at_most - 1).clamp(min=0)]
    tied = torch.nonzero((at_most > 0) & (largest_below == values)).squeeze(1)
    preceding = at_most
    block = max(1, _TIE_BLOCK_ELEMENTS // width)
    for start in range(0, tied.numel(), block):
        sel = tied[start : start + block]
        d_m, i_m = match_dist[rows[sel]], match_idx[rows[sel]]
        d_c, i_c = values[sel, None], cols[sel, None]
        preceding[sel] = ((d_m < d_c) | ((d_m == d_c) & (i_m < i_c))).sum(dim=1)

    # A valid candidate with `p` preceding matches precedes matches p, p+1, ...; so the number of
    # valid entries up to and including match i is the cumulated histogram of p at i.
    hist = torch.zeros(num_queries * (width + 1), dtype=torch.int64, device=device)
    hist.index_add_(0, rows * (width + 1) + preceding.clamp(max=width), torch.ones_like(rows))
    ranks = hist.view(num_queries, width + 1).cumsum(dim=1)[:, :width] - 1
    return MatchRanks(ranks, num_matches)
