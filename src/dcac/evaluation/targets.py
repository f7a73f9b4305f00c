"""Scoring a Re-ID model on the query/gallery split of each target dataset (docs/method.md §7).

In a distributed run every rank calls :func:`evaluate_on_target`: the ranks extract shards of the query and
gallery features, which are gathered; rank 0 computes the metrics and broadcasts them to the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from dcac.config import DCACConfig
from dcac.config.compat import eval_interpolation
from dcac.data.records import ReIDDataset
from dcac.evaluation import evaluate_features
from dcac.evaluation.distributed import broadcast_from_main, extract_features_sharded, rank_and_world_size
from dcac.models.reid_model import ReIDModel


@dataclass
class TargetEvaluation:
    """The metrics of one target and the features they were computed from (for reports)."""

    metrics: dict[str, Any]
    query_feats: torch.Tensor
    gallery_feats: torch.Tensor


def extract_target_features(
    model: ReIDModel,
    target: ReIDDataset,
    config: DCACConfig,
    *,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised query and gallery features, taken after or before the BNNeck per ``eval.after_bn``, with the
    flip test per ``eval.flip_test``.

    A collective in a distributed run: each rank extracts a shard, and every rank gets all features.
    """
    data = config.data
    feats = []
    for split, records in (("query", target.query), ("gallery", target.gallery)):
        feats.append(
            extract_features_sharded(
                model,
                records,
                height=data.height,
                width=data.width,
                batch_size=data.test_batch_size,
                num_workers=data.num_workers,
                after_bn=config.eval.after_bn,
                flip=config.eval.flip_test,
                device=device,
                progress=f"{target.name} {split}" if progress else None,
                interpolation=eval_interpolation(config),
            )
        )
    return feats[0], feats[1]


def score_target(
    query_feats: torch.Tensor,
    gallery_feats: torch.Tensor,
    target: ReIDDataset,
    config: DCACConfig,
    *,
    rerank: bool | None = None,
) -> dict[str, Any]:
    """CMC / mAP / mINP of the given features on ``target`` (re-ranked when asked or configured)."""
    ev = config.eval
    use_rerank = ev.rerank if rerank is None else rerank
    result = evaluate_features(
        query_feats,
        gallery_feats,
        *target.labels(),
        metric=ev.metric,
        max_rank=ev.max_rank,
        rerank=(ev.k1, ev.k2, ev.lambda_value) if use_rerank else None,
    )
    return summarize(result)


def evaluate_on_target(
    model: ReIDModel,
    target: ReIDDataset,
    config: DCACConfig,
    *,
    device: torch.device | str = "cpu",
    rerank: bool | None = None,
    progress: bool = False,
) -> TargetEvaluation:
    """Extract the features of one target's query and gallery and score them.

    A collective in a distributed run: every rank must call it, and every rank gets rank 0's metrics.
    """
    query_feats, gallery_feats = extract_target_features(model, target, config, device=device, progress=progress)
    # Rank 0 scores; the others wait in the broadcast. A failure on rank 0 is broadcast too and raised on
    # every rank, so no rank is left waiting in a collective that will never come.
    outcome: dict[str, Any] | Exception = {}
    if rank_and_world_size()[0] == 0:
        try:
            outcome = score_target(query_feats, gallery_feats, target, config, rerank=rerank)
        except Exception as err:  # noqa: BLE001 - re-raised below on every rank
            outcome = err
    outcome = broadcast_from_main(outcome)
    if isinstance(outcome, Exception):
        raise outcome
    return TargetEvaluation(outcome, query_feats, gallery_feats)


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
    return (
        f"{name}: mAP={summary['mAP']:.1f} {ranks} mINP={summary['mINP']:.1f} ({summary['num_valid_queries']} queries)"
    )
