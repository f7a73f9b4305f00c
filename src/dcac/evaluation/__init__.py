"""dcac.evaluation: Re-ID distances, CMC / mAP / mINP and k-reciprocal re-ranking.

Public API:
    compute_distance(q_feats, g_feats, metric="euclidean", *, normalize=False, device=None)
    evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, *, chunk_size=None)
    evaluate_features(q_feats, g_feats, q_pids, g_pids, q_camids, g_camids, metric="euclidean",
                      max_rank=50, rerank=None, *, normalize=False, device=None, chunk_size=None)
    RerankParams(k1=20, k2=6, lambda_value=0.3), RERANK_PRESETS, resolve_rerank(spec)
    (params below: a RerankParams, a preset name, a (k1, k2, lambda_value) tuple or a dict)
    rerank_dense(q_feats, g_feats, params, *, metric="euclidean")
    rerank_sparse(q_feats, g_feats, params, *, metric="euclidean", chunk_size=None)
"""

from .distance import METRICS, compute_distance
from .evaluate_features import evaluate_features
from .rank_metrics import evaluate_rank
from .rerank_dense import rerank_dense
from .rerank_params import RERANK_PRESETS, RerankParams, resolve_rerank
from .rerank_sparse import rerank_sparse

__all__ = [
    "METRICS",
    "RERANK_PRESETS",
    "RerankParams",
    "compute_distance",
    "evaluate_features",
    "evaluate_rank",
    "rerank_dense",
    "rerank_sparse",
    "resolve_rerank",
]
