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

Algorithm (memory: the features, one slice of about 4M distances and its masks, the genuine distances,
a fixed histogram; never the impostor list, ~960M pairs at MSMT17 size):
1. pass 1 over query slices: recompute each slice's distances, keep every genuine distance (there are
   few: about #queries x images per identity), and count the impostor distances into a fixed fine
   histogram (``num_bins * FINE_BINS_PER_BIN`` bins over a range bounding every distance, with two
   open-ended bins so nothing is clamped);
2. the cumulated counts name, for each target rank k, the one fine bin holding the k-th smallest
   impostor distance;
3. pass 2: collect the impostor distances inside each such bin (if a bin holds more than
   ``max_collect`` values it is histogrammed again, one more pass, until it fits) and sort them: the
   k-th value is read off exactly. In the same pass every impostor distance is located among the sorted
   genuine distances (a binary search), which gives, for every genuine distance g, the exact numbers of
   impostors below and at-or-below g: the EER, a minimum over the thresholds where FNR changes, is then
   exact as well (between two genuine distances FNR is constant and FPR smallest just above the lower).
Bin membership is decided by the same float comparisons in every pass, so the passes agree exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .distance import check_metric, distance_operands, feature_pair

__all__ = ["DEFAULT_FPRS", "verification_metrics"]

DEFAULT_FPRS = (1e-4, 1e-3, 1e-2)
FINE_BINS_PER_BIN = 1024
SLICE_ELEMENTS = 1 << 22  # distances per slice: 16 MiB of float32 plus its masks


@dataclass
class _Pairs:
    """The operands and labels needed to recompute every slice of pair distances, identically each pass."""

    q_operand: torch.Tensor
    g_operand_t: torch.Tensor
    q_pids: torch.Tensor
    q_cams: torch.Tensor
    g_pids: torch.Tensor
    g_cams: torch.Tensor

    def slices(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(impostor distances, genuine distances) of each query slice, flattened."""
        rows = max(1, SLICE_ELEMENTS // max(1, self.g_operand_t.shape[1]))
        for start in range(0, self.q_operand.shape[0], rows):
            stop = min(start + rows, self.q_operand.shape[0])
            dist = self.q_operand[start:stop] @ self.g_operand_t
            same_id = self.q_pids[start:stop, None] == self.g_pids[None, :]
            same_cam = self.q_cams[start:stop, None] == self.g_cams[None, :]
            yield dist[~same_id], dist[same_id & ~same_cam]


def _distance_bound(q: torch.Tensor, g: torch.Tensor, metric: str) -> float:
    """An upper bound of every distance: 2 for cosine, (max |q| + max |g|)^2 for squared Euclidean."""
    if metric == "cosine":
        return 2.0
    return float((q.norm(dim=1).max() + g.norm(dim=1).max()) ** 2) if q.numel() and g.numel() else 1.0


def _in_range(values: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return values[(values >= lo) & (values < hi)]


@dataclass
class _RankSearch:
    """Finds the ``rank``-th smallest impostor distance (0-based) by narrowing a range pass after pass.

    Invariant: ``offset`` impostors lie below ``lo`` and the wanted one is the ``rank``-th in ``[lo, hi)``.
    A pass either histograms ``[lo, hi)`` on ``edges`` (interior bin edges) or collects the values in it.
    """

    rank: int
    lo: float = -math.inf
    hi: float = math.inf
    offset: int = 0
    edges: torch.Tensor | None = None
    counts: torch.Tensor | None = None
    collected: list[torch.Tensor] | None = None
    value: float | None = None
    below_value: int = 0  # impostors strictly below the value: its exact FPR numerator
    extremes: tuple[float, float] | None = None  # min and max in [lo, hi) seen by this histogram pass

    def narrow(self) -> int:
        """After a histogram pass: keep only the bin holding the wanted rank; return that bin's count.

        A range whose values are all equal (ties, or floats too dense to split, as near 0) is resolved.
        """
        if self.extremes is not None and self.extremes[0] == self.extremes[1]:
            self.value, self.below_value = self.extremes[0], self.offset
            return 0
        cumulated = torch.cumsum(self.counts, 0)
        index = int(torch.searchsorted(cumulated, cumulated.new_tensor(self.rank), right=True))
        below = int(cumulated[index - 1]) if index > 0 else 0
        self.lo = self.lo if index == 0 else float(self.edges[index - 1])
        self.hi = self.hi if index == len(self.edges) else float(self.edges[index])
        self.offset, self.rank = self.offset + below, self.rank - below
        return int(self.counts[index])

    def plan(self, num_in_range: int, max_collect: int, num_bins: int, like: torch.Tensor) -> None:
        """Choose the next pass: collect if the range is small (or open-ended), else histogram it again."""
        self.collected, self.edges, self.extremes = None, None, None
        if self.value is not None:
            return
        if num_in_range <= max_collect or not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            self.collected = []
        else:
            self.edges = torch.linspace(self.lo, self.hi, num_bins + 1, dtype=like.dtype, device=like.device)[1:-1]
            self.counts = torch.zeros(num_bins, dtype=torch.int64, device=like.device)

    def add(self, impostors: torch.Tensor) -> None:
        inside = _in_range(impostors, self.lo, self.hi)
        if self.edges is None:
            self.collected.append(inside)
        elif len(inside):
            self.counts += torch.bincount(torch.bucketize(inside, self.edges, right=True),
                                          minlength=len(self.edges) + 1)
            low, high = float(inside.min()), float(inside.max())
            self.extremes = (low, high) if self.extremes is None else (min(self.extremes[0], low),
                                                                         max(self.extremes[1], high))

    def resolve(self) -> None:
        """After a collect pass: the value is the rank-th of the sorted collected values."""
        values = torch.sort(torch.cat(self.collected)).values
        self.value = float(values[self.rank])
        self.below_value = self.offset + int(torch.searchsorted(values, values[self.rank], right=False))


def _first_pass(pairs: _Pairs, edges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted genuine distances and the impostor counts per fine bin (``bucketize(right=True)`` over edges)."""
    counts = torch.zeros(len(edges) + 1, dtype=torch.int64, device=edges.device)
    genuine = []
    for impostors, genuine_part in pairs.slices():
        counts += torch.bincount(torch.bucketize(impostors, edges, right=True), minlength=len(edges) + 1)
        genuine.append(genuine_part)
    return torch.sort(torch.cat(genuine)).values, counts


def _search_pass(pairs: _Pairs, searches: Sequence[_RankSearch], genuine: torch.Tensor | None) -> torch.Tensor | None:
    """One pass feeding every unresolved search; with ``genuine``, also count impostors per genuine value.

    Returns ``[#impostors < g_i, #impostors <= g_i]`` for the sorted genuine distances g_i (2 x N).
    """
    below = None if genuine is None else torch.zeros(2, len(genuine) + 1, dtype=torch.int64, device=genuine.device)
    for impostors, _ in pairs.slices():
        for search in searches:
            search.add(impostors)
        if below is not None:
            # v < g_i  <=>  #(genuine <= v) <= i ;  v <= g_i  <=>  #(genuine < v) <= i
            below[0] += torch.bincount(torch.searchsorted(genuine, impostors, right=True), minlength=len(genuine) + 1)
            below[1] += torch.bincount(torch.searchsorted(genuine, impostors, right=False), minlength=len(genuine) + 1)
    return None if below is None else torch.cumsum(below, dim=1)[:, :-1]


def _equal_error(genuine: torch.Tensor, below: torch.Tensor, num_impostors: int) -> tuple[float, float]:
    """EER = min_t max(FPR, FNR) and a threshold reaching it, from the exact per-genuine impostor counts."""
    n_gen = len(genuine)
    fnr_at = (n_gen - torch.searchsorted(genuine, genuine, right=False)).double() / n_gen  # #gen >= g_i
    fnr_above = (n_gen - torch.searchsorted(genuine, genuine, right=True)).double() / n_gen  # #gen > g_i
    at_value = torch.maximum(below[0].double() / num_impostors, fnr_at)  # t = g_i
    just_above = torch.maximum(below[1].double() / num_impostors, fnr_above)  # t = the next float above g_i
    candidates = torch.cat([at_value, just_above])
    best = int(torch.argmin(candidates))
    if best < n_gen:
        return float(candidates[best]), float(genuine[best])
    value = genuine[best - n_gen]
    return float(candidates[best]), float(torch.nextafter(value, value.new_tensor(math.inf)))


def _histograms(genuine: torch.Tensor, fine_counts: torch.Tensor, bound: float, num_bins: int) -> dict[str, Any]:
    inner = fine_counts[1:-1].reshape(num_bins, FINE_BINS_PER_BIN).sum(dim=1)
    inner[0] += fine_counts[0]
    inner[-1] += fine_counts[-1]  # values beyond the bound (rounding) go to the outermost bins
    edges = torch.linspace(0.0, bound, num_bins + 1, device=genuine.device)
    genuine_counts = torch.bincount(torch.bucketize(genuine, edges[1:-1], right=True), minlength=num_bins)
    return {"edges": [float(e) for e in edges], "genuine": genuine_counts.tolist(), "impostor": inner.tolist()}


def verification_metrics(q_feats: Any, g_feats: Any, q_pids: Sequence[int], g_pids: Sequence[int],
                         q_camids: Sequence[int], g_camids: Sequence[int], *, metric: str = "euclidean",
                         fprs: Sequence[float] = DEFAULT_FPRS, num_bins: int = 50,
                         max_collect: int = 1 << 22) -> dict[str, Any]:
    """TPR at each FPR in ``fprs`` (with its threshold), EER and distance histograms; see the module docstring.

    Features are used as given (L2-normalise them first for the usual f_bn protocol); ``metric`` is the
    evaluation's (squared Euclidean or cosine distance). ``max_collect`` bounds the impostor distances
    held at once in pass 2 (more passes when a fine bin is denser).
    """
    check_metric(metric)
    q, g = feature_pair(q_feats, g_feats, normalize=False, device=None)
    q, g = q.float(), g.float()
    a, b = distance_operands(q, g, metric)
    as_long = lambda values: torch.as_tensor(list(values), dtype=torch.int64, device=q.device)  # noqa: E731
    pairs = _Pairs(a, b.T.contiguous(), as_long(q_pids), as_long(q_camids), as_long(g_pids), as_long(g_camids))
    bound = _distance_bound(q, g, metric)
    fine_edges = torch.linspace(0.0, bound, num_bins * FINE_BINS_PER_BIN + 1, device=q.device)
    genuine, fine_counts = _first_pass(pairs, fine_edges)
    num_impostors = int(fine_counts.sum())
    if not len(genuine) or not num_impostors:
        raise ValueError(f"verification needs genuine and impostor pairs; got {len(genuine)} genuine "
                         f"(same identity, other camera) and {num_impostors} impostor pairs")
    searches = {f: _RankSearch(math.floor(f * num_impostors)) for f in fprs
                if math.floor(f * num_impostors) < num_impostors}
    pending = list(searches.values())
    for search in pending:  # pass 1's fine histogram serves every search
        search.edges, search.counts = fine_edges, fine_counts
        search.plan(search.narrow(), max_collect, FINE_BINS_PER_BIN, fine_edges)
    pending = [s for s in pending if s.value is None]
    below = _search_pass(pairs, pending, genuine)
    passes = 2
    while True:
        for search in pending:
            if search.edges is None:
                search.resolve()
            else:
                search.plan(search.narrow(), max_collect, FINE_BINS_PER_BIN, fine_edges)
        pending = [s for s in pending if s.value is None]
        if not pending:
            break
        _search_pass(pairs, pending, None)
        passes += 1
    return _summary(fprs, searches, genuine, below, num_impostors, fine_counts, bound, num_bins, passes)


def _summary(fprs, searches, genuine, below, num_impostors, fine_counts, bound, num_bins, passes) -> dict[str, Any]:
    points = {}
    for f in fprs:
        search = searches.get(f)
        threshold = search.value if search is not None else math.inf
        points[f"{f:g}"] = {"fpr_target": f, "threshold": threshold,
                            "tpr": int(torch.searchsorted(genuine, genuine.new_tensor(threshold))) / len(genuine),
                            "fpr": (search.below_value if search is not None else num_impostors) / num_impostors}
    eer, eer_threshold = _equal_error(genuine, below, num_impostors)
    return {"rule": "same person if distance < threshold", "num_genuine_pairs": len(genuine),
            "num_impostor_pairs": num_impostors, "tpr_at_fpr": points, "eer": eer, "eer_threshold": eer_threshold,
            "histogram": _histograms(genuine, fine_counts, bound, num_bins), "passes": passes}
