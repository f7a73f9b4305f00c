"""dcac.evaluation: Re-ID distances, CMC / mAP / mINP and k-reciprocal re-ranking.

Public API:
    compute_distance(q_feats, g_feats, metric="euclidean", *, normalize=False, device=None)
    evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, *, chunk_size=None)
"""

from .distance import METRICS, compute_distance
from .rank_metrics import evaluate_rank

__all__ = ["METRICS", "compute_distance", "evaluate_rank"]
