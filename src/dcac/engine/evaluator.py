"""Scoring a Re-ID model on the query/gallery split of each target dataset (DESIGN §2)."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from dcac.config import DCACConfig
from dcac.data.records import ReIDDataset
from dcac.engine.features import extract_features, test_loader
from dcac.evaluation import evaluate_features
from dcac.models.reid_model import ReIDModel


def evaluate_on_target(
    model: ReIDModel,
    target: ReIDDataset,
    config: DCACConfig,
    *,
    device: torch.device | str = "cpu",
    rerank: bool | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """CMC / mAP / mINP of ``model`` on one target; features are taken after or before the BNNeck per config."""
    data, ev = config.data, config.eval
    feats = {}
    for split, records in (("query", target.query), ("gallery", target.gallery)):
        loader = test_loader(records, data.height, data.width, data.test_batch_size, data.num_workers)
        feats[split] = extract_features(
            model, loader, after_bn=ev.after_bn, device=device, progress=f"{target.name} {split}" if progress else None
        )
    use_rerank = ev.rerank if rerank is None else rerank
    result = evaluate_features(
        feats["query"],
        feats["gallery"],
        [r.pid for r in target.query],
        [r.pid for r in target.gallery],
        [r.camid for r in target.query],
        [r.camid for r in target.gallery],
        metric=ev.metric,
        max_rank=ev.max_rank,
        rerank=(ev.k1, ev.k2, ev.lambda_value) if use_rerank else None,
    )
    return summarize(result)


def summarize(result: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-friendly metrics: mAP, mINP and rank-1/5/10 in percent, the full CMC curve as fractions."""
    cmc = [float(x) for x in result["cmc"]]
    summary = {
        "mAP": 100.0 * float(result["mAP"]),
        "mINP": 100.0 * float(result["mINP"]),
        "num_valid_queries": int(result["num_valid_queries"]),
        "cmc": cmc,
    }
    for k in (1, 5, 10):
        if k <= len(cmc):
            summary[f"rank{k}"] = 100.0 * cmc[k - 1]
    return summary


def format_metrics(name: str, summary: Mapping[str, Any]) -> str:
    ranks = " ".join(f"R{k}={summary[f'rank{k}']:.1f}" for k in (1, 5, 10) if f"rank{k}" in summary)
    return f"{name}: mAP={summary['mAP']:.1f} {ranks} mINP={summary['mINP']:.1f} ({summary['num_valid_queries']} queries)"
