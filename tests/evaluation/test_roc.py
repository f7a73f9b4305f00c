"""Exact verification metrics against a brute-force reference over the full pair list."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dcac.evaluation import roc
from dcac.evaluation.distance import distance_operands
from dcac.evaluation.roc import verification_metrics


def brute_force(q, g, qp, gp, qc, gc, metric, fprs):
    a, b = distance_operands(q, g, metric)
    rows = max(1, roc.SLICE_ELEMENTS // g.shape[0])  # the same GEMM slices, hence the same float values
    dist = torch.cat([a[s : s + rows] @ b.T for s in range(0, len(a), rows)]).numpy()
    same = qp[:, None] == gp[None, :]
    genuine = np.sort(dist[same & (qc[:, None] != gc[None, :])])
    impostor = np.sort(dist[~same])
    points = {}
    for f in fprs:
        k = math.floor(f * len(impostor))
        t = float(impostor[k]) if k < len(impostor) else math.inf
        points[f] = (t, float(np.mean(genuine < t)), float(np.mean(impostor < t)))
    thresholds = np.concatenate([np.unique(np.concatenate([genuine, impostor])), [np.inf]])
    thresholds = np.concatenate([thresholds, np.nextafter(thresholds[:-1], np.float32(np.inf))])
    fpr = np.searchsorted(impostor, thresholds, side="left") / len(impostor)
    fnr = 1 - np.searchsorted(genuine, thresholds, side="left") / len(genuine)
    eer = float(np.min(np.maximum(fpr, fnr)))
    return points, eer, len(genuine), len(impostor), lambda t: max(np.mean(impostor < t), 1 - np.mean(genuine < t))


def labelled(num_q, num_g, num_ids, num_cams, seed):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, num_ids, num_q),
        rng.integers(0, num_ids, num_g),
        rng.integers(0, num_cams, num_q),
        rng.integers(0, num_cams, num_g),
    )


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize(("max_collect", "num_bins"), [(1 << 22, 50), (7, 1)])  # 7, 1: extra histogram passes
def test_matches_brute_force(metric: str, max_collect: int, num_bins: int) -> None:
    qp, gp, qc, gc = labelled(150, 400, 30, 3, seed=0)
    centres = torch.randn(30, 16, generator=torch.Generator().manual_seed(1))
    noise = torch.Generator().manual_seed(2)
    q = torch.nn.functional.normalize(centres[qp] + 0.8 * torch.randn(150, 16, generator=noise), dim=1)
    g = torch.nn.functional.normalize(centres[gp] + 0.8 * torch.randn(400, 16, generator=noise), dim=1)
    fprs = (1e-4, 1e-3, 1e-2, 0.3)
    result = verification_metrics(
        q, g, qp, gp, qc, gc, metric=metric, fprs=fprs, max_collect=max_collect, num_bins=num_bins
    )
    points, eer, n_gen, n_imp, worse_rate_at = brute_force(q, g, qp, gp, qc, gc, metric, fprs)
    assert result["num_genuine_pairs"] == n_gen and result["num_impostor_pairs"] == n_imp
    for f in fprs:
        got = result["tpr_at_fpr"][f"{f:g}"]
        assert (got["threshold"], got["tpr"], got["fpr"]) == pytest.approx(points[f], abs=0, rel=0)
        assert got["fpr"] <= f
    assert result["eer"] == eer and worse_rate_at(np.float32(result["eer_threshold"])) == eer
    assert result["passes"] > 2 if max_collect == 7 else result["passes"] == 2
    assert sum(result["histogram"]["genuine"]) == n_gen and sum(result["histogram"]["impostor"]) == n_imp


def test_ties_are_counted_exactly() -> None:
    # Integer features: squared Euclidean distances are small integers, so nearly every distance is tied.
    qp, gp, qc, gc = labelled(60, 90, 6, 2, seed=3)
    rng = np.random.default_rng(4)
    q = torch.tensor(rng.integers(0, 3, (60, 4)), dtype=torch.float32)
    g = torch.tensor(rng.integers(0, 3, (90, 4)), dtype=torch.float32)
    fprs = (0.01, 0.1, 0.5)
    result = verification_metrics(q, g, qp, gp, qc, gc, fprs=fprs, max_collect=5, num_bins=1)
    points, eer, _, _, worse_rate_at = brute_force(q, g, qp, gp, qc, gc, "euclidean", fprs)
    for f in fprs:
        got = result["tpr_at_fpr"][f"{f:g}"]
        assert (got["threshold"], got["tpr"], got["fpr"]) == points[f]
    assert result["eer"] == eer and worse_rate_at(np.float32(result["eer_threshold"])) == eer


def test_needs_both_kinds_of_pairs() -> None:
    feats = torch.eye(3)
    with pytest.raises(ValueError, match="genuine"):
        verification_metrics(feats, feats, [0, 1, 2], [0, 1, 2], [0, 0, 0], [0, 0, 0])
