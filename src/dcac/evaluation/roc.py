"""Verification ("same person or not?") on a query/gallery split: exact ROC points without a full pair list.

Pairs are the query x gallery pairs the Re-ID protocol scores: *genuine* pairs share the identity and come
from different cameras, *impostor* pairs have different identities; pairs of one identity seen by one
camera are left out (the ranking protocol ignores them too). The decision rule is "same person if the
distance is below the threshold t": FPR(t) = #impostors with d < t / #impostors, TPR(t) = #genuine with
d < t / #genuine, FNR = 1 - TPR.

Reported, all exact for the distances as computed (float32 GEMM of the evaluation's augmented operands):
- for each target FPR f: the largest threshold whose FPR is at most f, i.e. the k-th smallest impostor
  distance (0-based k = floor(f * #impostors), ties included), with its TPR and actual FPR;
- EER = min over t of max(FPR(t), FNR(t)) (the crossing point of the two rates), and a threshold there;
- histograms of the genuine and impostor distances on fixed bins.

Algorithm (memory: the features, one slice of about 4M distances with its masks and bin indices, the
genuine distances, fixed histograms; never the impostor list, ~960M pairs at MSMT17 size):
1. pass 1 over query slices recomputes each slice's distances, keeps every genuine distance (there are
   few: about #queries x images per identity) and counts the impostor distances into a fine histogram.
   Bins are computed arithmetically, ``floor((d - lo) * scale)`` clamped to the two open end bins: a
   monotone map, so every bin is an interval of values and the same float gets the same bin in every
   pass (counts are of all pairs minus the same-identity pairs, so no impostor copy is made);
2. the cumulated counts name, for each target rank k, the one bin holding the k-th smallest impostor
   distance, and the one bin where FPR overtakes FNR (both rates are exact at bin boundaries);
3. pass 2 collects the impostor distances inside each rank's bin and sorts them: the k-th is read off.
   A bin with more than ``max_collect`` values is histogrammed again (a nested bin inside it, one more
   pass) until it fits, or resolved at once when all its values are equal. The EER needs no collection:
   the minimum of max(FPR, FNR) lies in the crossing bin and is reached at a bin boundary, at a genuine
   distance g or just above one (FNR is constant between genuine distances while FPR grows), and the
   impostors below each such g are counted exactly by a binary search of the crossing bin's impostors
   among the sorted genuine distances.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .distance import check_metric, distance_operands, feature_pair

__all__ = ["DEFAULT_FPRS", "check_fpr", "verification_metrics"]

DEFAULT_FPRS = (1e-4, 1e-3, 1e-2)
FINE_BINS_PER_BIN = 1024
SLICE_ELEMENTS = 1 << 22  # distances per slice: 16 MiB of float32 plus its masks and bin indices
MAX_EXTRA_PASSES = 24  # nested bins shrink ~1000x a pass: float32 ranges are exhausted long before


@dataclass
class _Pairs:
    """The operands and labels needed to recompute every slice of pair distances, identically each pass."""

    q_operand: torch.Tensor
    g_operand_t: torch.Tensor
    q_pids: torch.Tensor
    q_cams: torch.Tensor
    g_pids: torch.Tensor
    g_cams: torch.Tensor

    def slices(self, bins: _Bins) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(all distances, same-identity mask, other-camera mask, ``bins`` index) of each query slice, flattened.

        The four are views of buffers allocated once and overwritten slice after slice (callers copy what
        they keep): fresh ~100 MiB of temporaries per slice fragment the C heap, whose resident size then
        grows pass after pass far beyond one slice's working set.
        """
        num_gallery = self.g_operand_t.shape[1]
        rows = max(1, SLICE_ELEMENTS // max(1, num_gallery))
        device = self.q_operand.device
        dist_buf = torch.empty(rows * num_gallery, device=device)
        scratch = torch.empty_like(dist_buf)
        index_buf = torch.empty(rows * num_gallery, dtype=torch.int64, device=device)
        same_buf = torch.empty(rows * num_gallery, dtype=torch.bool, device=device)
        cam_buf = torch.empty_like(same_buf)
        for start in range(0, self.q_operand.shape[0], rows):
            stop = min(start + rows, self.q_operand.shape[0])
            size = (stop - start) * num_gallery
            dist, index = dist_buf[:size], index_buf[:size]
            torch.matmul(self.q_operand[start:stop], self.g_operand_t, out=dist.view(stop - start, num_gallery))
            same_id = torch.eq(
                self.q_pids[start:stop, None], self.g_pids[None, :], out=same_buf[:size].view(stop - start, num_gallery)
            ).reshape(-1)
            other_cam = torch.ne(
                self.q_cams[start:stop, None], self.g_cams[None, :], out=cam_buf[:size].view(stop - start, num_gallery)
            ).reshape(-1)
            bins.index(dist, out=(scratch[:size], index))
            yield dist, same_id, other_cam, index


@dataclass(frozen=True)
class _Bins:
    """``num`` bins of width 1/scale from ``lo``, plus an open bin at each end: index 0 .. num + 1."""

    lo: float
    scale: float
    num: int

    def index(self, values: torch.Tensor, out: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Bin indices; ``out``: a float scratch and the int64 result, both of ``values``' size, to reuse."""
        if out is None:
            return ((values - self.lo) * self.scale).floor_().clamp_(-1, self.num).long() + 1
        scratch, result = out
        torch.sub(values, self.lo, out=scratch).mul_(self.scale).floor_().clamp_(-1, self.num)
        return result.copy_(scratch).add_(1)

    def count(self, values: torch.Tensor) -> torch.Tensor:
        return torch.bincount(self.index(values), minlength=self.num + 2)

    def inner(self, index: int, extremes: tuple[float, float], num: int) -> _Bins:
        """Finer bins covering bin ``index`` (an end bin: the observed extremes beyond this range)."""
        if index == 0:
            low, high = extremes[0], self.lo
        elif index == self.num + 1:
            low, high = self.lo + self.num / self.scale, extremes[1]
        else:
            low, high = self.lo + (index - 1) / self.scale, self.lo + index / self.scale
        return _Bins(low, num / max(high - low, 1e-30), num)


def _distance_bound(q: torch.Tensor, g: torch.Tensor, metric: str) -> float:
    """An upper bound of every distance: 2 for cosine, (max |q| + max |g|)^2 for squared Euclidean."""
    if metric == "cosine":
        return 2.0
    return float((q.norm(dim=1).max() + g.norm(dim=1).max()) ** 2) if q.numel() and g.numel() else 1.0


def _impostor_counts(bins: _Bins, dist: torch.Tensor, same_id: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Impostor counts per bin (``index``: the bins of ``dist``): all pairs minus the (few) same-identity pairs,
    so nothing large is copied."""
    return torch.bincount(index, minlength=bins.num + 2) - bins.count(dist[same_id])


@dataclass
class _RankSearch:
    """Finds the ``rank``-th smallest impostor distance (0-based) by nesting bins pass after pass.

    Invariant: ``offset`` impostors lie below the current bin, and the wanted one is the ``rank``-th inside
    it. The current bin is the chain ``path`` of (bins, index) pairs; a pass either histograms it on
    ``bins`` or collects its values.
    """

    rank: int
    path: list[tuple[_Bins, int]]
    offset: int = 0
    bins: _Bins | None = None
    counts: torch.Tensor | None = None
    extremes: tuple[float, float] | None = None
    collected: list[torch.Tensor] | None = None
    value: float | None = None
    below_value: int = 0  # impostors strictly below the value: its exact FPR numerator

    def inside(self, dist: torch.Tensor, same_id: torch.Tensor, first_index: torch.Tensor) -> torch.Tensor:
        """The impostor distances of this slice in the current bin (``first_index``: the slice's first-level bins)."""
        values = dist[(first_index == self.path[0][1]) & ~same_id]
        for bins, index in self.path[1:]:
            values = values[bins.index(values) == index]
        return values

    def choose(self, counts: torch.Tensor, bins: _Bins, max_collect: int, num_bins: int) -> None:
        """Descend into the bin holding the rank; plan the next pass (collect it, or histogram it finer)."""
        if self.extremes is not None and self.extremes[0] == self.extremes[1]:
            self.value, self.below_value = self.extremes[0], self.offset  # all values of the bin are equal
            return
        cumulated = torch.cumsum(counts, 0)
        index = int(torch.searchsorted(cumulated, cumulated.new_tensor(self.rank), right=True))
        below = int(cumulated[index - 1]) if index > 0 else 0
        self.offset, self.rank = self.offset + below, self.rank - below
        self.path.append((bins, index))
        extremes = self.extremes or (-math.inf, math.inf)
        self.extremes, self.collected, self.bins = None, None, None
        if int(counts[index]) <= max_collect or not all(map(math.isfinite, extremes)) and index in (0, bins.num + 1):
            self.collected = []
        else:
            self.bins = bins.inner(index, extremes, num_bins)
            self.counts = torch.zeros(num_bins + 2, dtype=torch.int64, device=counts.device)

    def add(self, dist: torch.Tensor, same_id: torch.Tensor, first_index: torch.Tensor) -> None:
        values = self.inside(dist, same_id, first_index)
        if self.bins is None:
            self.collected.append(values)
        elif len(values):
            self.counts += self.bins.count(values)
            low, high = float(values.min()), float(values.max())
            self.extremes = (
                (low, high) if self.extremes is None else (min(self.extremes[0], low), max(self.extremes[1], high))
            )

    def finish_pass(self, max_collect: int, num_bins: int) -> None:
        if self.bins is not None:
            self.choose(self.counts, self.bins, max_collect, num_bins)
            return
        values = torch.sort(torch.cat(self.collected)).values
        self.value = float(values[self.rank])
        self.below_value = self.offset + int(torch.searchsorted(values, values[self.rank], right=False))


def _first_pass(pairs: _Pairs, bins: _Bins) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted genuine distances and the impostor counts per bin."""
    counts = torch.zeros(bins.num + 2, dtype=torch.int64, device=pairs.q_operand.device)
    genuine = []
    for dist, same_id, other_cam, index in pairs.slices(bins):
        counts += _impostor_counts(bins, dist, same_id, index)
        genuine.append(dist[same_id & other_cam])
    return torch.sort(torch.cat(genuine)).values, counts


@dataclass
class _CrossingCount:
    """Exact impostor counts below (and at-or-below) each genuine distance of the FPR/FNR crossing bin."""

    bins: _Bins
    index: int
    genuine: torch.Tensor  # the sorted genuine distances in the crossing bin
    below_bin: int  # impostors in the bins before it

    def __post_init__(self) -> None:
        self.strictly = torch.zeros(len(self.genuine) + 1, dtype=torch.int64, device=self.genuine.device)
        self.at_or = torch.zeros_like(self.strictly)
        # The smallest and largest distance in the bin: thresholds that realise its two boundaries exactly.
        self.extremes = (
            (float(self.genuine[0]), float(self.genuine[-1])) if len(self.genuine) else (math.inf, -math.inf)
        )

    def add(self, dist: torch.Tensor, same_id: torch.Tensor, first_index: torch.Tensor) -> None:
        values = dist[(first_index == self.index) & ~same_id]
        if len(values):
            self.extremes = (min(self.extremes[0], float(values.min())), max(self.extremes[1], float(values.max())))
        # v < g_i  <=>  #(genuine <= v) <= i ;  v <= g_i  <=>  #(genuine < v) <= i
        self.strictly += torch.bincount(
            torch.searchsorted(self.genuine, values, right=True), minlength=len(self.strictly)
        )
        self.at_or += torch.bincount(torch.searchsorted(self.genuine, values, right=False), minlength=len(self.at_or))

    def impostors_below(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(#impostors < g_i, #impostors <= g_i) for the crossing bin's genuine distances g_i."""
        return (self.below_bin + torch.cumsum(self.strictly, 0)[:-1], self.below_bin + torch.cumsum(self.at_or, 0)[:-1])


def _crossing(bins: _Bins, counts: torch.Tensor, genuine: torch.Tensor) -> tuple[int, list[tuple[float, float]]]:
    """The bin where FPR overtakes FNR, and the (FPR, FNR) pairs at its two boundaries."""
    n_imp, n_gen = int(counts.sum()), len(genuine)
    fpr_at = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)]).double() / n_imp  # before bin j
    gen_counts = bins.count(genuine)
    fnr_at = 1 - torch.cat([gen_counts.new_zeros(1), torch.cumsum(gen_counts, 0)]).double() / n_gen
    boundary = int(torch.nonzero(fpr_at >= fnr_at)[0])  # exists: at the last boundary FPR = 1, FNR = 0
    index = max(boundary - 1, 0)
    return index, [(float(fpr_at[index]), float(fnr_at[index])), (float(fpr_at[index + 1]), float(fnr_at[index + 1]))]


def _equal_error(
    crossing: _CrossingCount, boundaries, genuine_all: torch.Tensor, num_impostors: int
) -> tuple[float, float]:
    """EER = min_t max(FPR, FNR) and a threshold reaching it (see the module docstring)."""
    n_gen = len(genuine_all)
    gen = crossing.genuine
    best = min((max(f, g), k) for k, (f, g) in enumerate(boundaries))
    eer, threshold = best[0], _boundary_value(crossing, best[1])
    if len(gen):
        below, at_or = crossing.impostors_below()
        fnr_at = (n_gen - torch.searchsorted(genuine_all, gen, right=False)).double() / n_gen  # #gen >= g_i
        fnr_above = (n_gen - torch.searchsorted(genuine_all, gen, right=True)).double() / n_gen  # #gen > g_i
        at_value = torch.maximum(below.double() / num_impostors, fnr_at)  # t = g_i
        just_above = torch.maximum(at_or.double() / num_impostors, fnr_above)  # t = the next float above g_i
        for candidates, shift in ((at_value, False), (just_above, True)):
            k = int(torch.argmin(candidates))
            if float(candidates[k]) < eer:
                value = gen[k]
                eer = float(candidates[k])
                threshold = float(torch.nextafter(value, value.new_tensor(math.inf))) if shift else float(value)
    return eer, threshold


def _boundary_value(crossing: _CrossingCount, side: int) -> float:
    """A threshold realising the lower (0) or upper (1) boundary of the crossing bin exactly.

    The bin map is monotone, so every distance of an earlier bin is below the bin's smallest distance and
    every distance of a later bin above its largest: ``d < min`` is the lower boundary, ``d < next(max)``
    the upper one. An empty bin has no distances between its boundaries: its lower edge serves both.
    """
    low, high = crossing.extremes
    if low > high:
        bins, index = crossing.bins, crossing.index
        return bins.lo + (index - 1) / bins.scale if index > 0 else -math.inf
    if side == 0:
        return low
    return float(torch.nextafter(torch.tensor(high), torch.tensor(math.inf)))


def _histograms(
    genuine: torch.Tensor, fine: _Bins, fine_counts: torch.Tensor, bound: float, num_bins: int
) -> dict[str, Any]:
    def coarse(counts: torch.Tensor) -> list[int]:
        inner = counts[1:-1].reshape(num_bins, FINE_BINS_PER_BIN).sum(dim=1)
        inner[0] += counts[0]
        inner[-1] += counts[-1]  # values beyond the bound (rounding) go to the outermost bins
        return inner.tolist()

    edges = [bound * k / num_bins for k in range(num_bins + 1)]
    return {"edges": edges, "genuine": coarse(fine.count(genuine)), "impostor": coarse(fine_counts)}


def check_fpr(value: float, what: str = "fprs") -> float:
    """``value`` if it is a false-positive rate a threshold can be chosen for: 0 < FPR < 1 (so not NaN/inf)."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"{what}: expected a false-positive rate with 0 < FPR < 1, got {value}")
    return value


def verification_metrics(
    q_feats: Any,
    g_feats: Any,
    q_pids: Sequence[int],
    g_pids: Sequence[int],
    q_camids: Sequence[int],
    g_camids: Sequence[int],
    *,
    metric: str = "euclidean",
    fprs: Sequence[float] = DEFAULT_FPRS,
    num_bins: int = 50,
    max_collect: int = 1 << 22,
) -> dict[str, Any]:
    """TPR at each FPR in ``fprs`` (with its threshold), EER and distance histograms; see the module docstring.

    Features are used as given (L2-normalise them first for the usual f_bn protocol); ``metric`` is the
    evaluation's (squared Euclidean or cosine distance). ``max_collect`` bounds the impostor distances
    held at once in pass 2 (more passes when a bin is denser).
    """
    check_metric(metric)
    for fpr in fprs:
        check_fpr(fpr)
    q, g = feature_pair(q_feats, g_feats, normalize=False, device=None)
    q, g = q.float(), g.float()
    a, b = distance_operands(q, g, metric)
    b_t = b.T.contiguous()
    del b  # the gallery operand is needed only transposed: one copy of it (160 MiB at MSMT17 size), not two
    ids = [torch.as_tensor(list(v), dtype=torch.int64, device=q.device) for v in (q_pids, q_camids, g_pids, g_camids)]
    pairs = _Pairs(a, b_t, *ids)
    bound = _distance_bound(q, g, metric)
    fine = _Bins(0.0, num_bins * FINE_BINS_PER_BIN / bound, num_bins * FINE_BINS_PER_BIN)
    genuine, fine_counts = _first_pass(pairs, fine)
    num_impostors = int(fine_counts.sum())
    if not len(genuine) or not num_impostors:
        raise ValueError(
            f"verification needs genuine and impostor pairs; got {len(genuine)} genuine "
            f"(same identity, other camera) and {num_impostors} impostor pairs"
        )
    searches = {
        f: _RankSearch(math.floor(f * num_impostors), []) for f in fprs if math.floor(f * num_impostors) < num_impostors
    }
    for search in searches.values():  # pass 1's histogram serves every search
        search.choose(fine_counts, fine, max_collect, FINE_BINS_PER_BIN)
    index, boundaries = _crossing(fine, fine_counts, genuine)
    in_bin = genuine[fine.index(genuine) == index]
    crossing = _CrossingCount(fine, index, in_bin, int(fine_counts[:index].sum()))
    passes = _refine(pairs, fine, [s for s in searches.values() if s.value is None], crossing, max_collect)
    eer, eer_threshold = _equal_error(crossing, boundaries, genuine, num_impostors)
    return _summary(
        fprs,
        searches,
        genuine,
        num_impostors,
        eer,
        eer_threshold,
        _histograms(genuine, fine, fine_counts, bound, num_bins),
        passes,
    )


def _refine(pairs: _Pairs, fine: _Bins, pending: list, crossing: _CrossingCount, max_collect: int) -> int:
    """Pass 2 (the crossing's bin and every unresolved threshold search) and any further passes; returns the
    total number of passes over the pairs."""
    passes = 1
    for first in (True, *[False] * MAX_EXTRA_PASSES):
        if not pending and not first:
            break
        for dist, same_id, _, first_index in pairs.slices(fine):  # every search starts from pass 1's bins
            for search in pending:
                search.add(dist, same_id, first_index)
            if first:
                crossing.add(dist, same_id, first_index)
        passes += 1
        for search in pending:
            search.finish_pass(max_collect, FINE_BINS_PER_BIN)
        pending = [s for s in pending if s.value is None]
    if pending:
        raise RuntimeError(f"verification: {len(pending)} threshold searches did not converge in {passes} passes")
    return passes


def _summary(fprs, searches, genuine, num_impostors, eer, eer_threshold, histogram, passes) -> dict[str, Any]:
    points = {}
    for f in fprs:
        search = searches.get(f)
        threshold = search.value if search is not None else math.inf
        points[f"{f:g}"] = {
            "fpr_target": f,
            "threshold": threshold,
            "tpr": int(torch.searchsorted(genuine, genuine.new_tensor(threshold))) / len(genuine),
            "fpr": (search.below_value if search is not None else num_impostors) / num_impostors,
        }
    return {
        "rule": "same person if distance < threshold",
        "num_genuine_pairs": len(genuine),
        "num_impostor_pairs": num_impostors,
        "tpr_at_fpr": points,
        "eer": eer,
        "eer_threshold": eer_threshold,
        "histogram": histogram,
        "passes": passes,
    }
