"""The classic protocol's small test sets (PRID, GRID, VIPeR, iLIDS) scored over several splits.

The literature reports the mean over 10 random identity splits; :func:`evaluate_splits` scores each
chosen split and their mean. Every split's query and gallery come from one image pool, so features are
extracted once for the union of the splits' images and looked up per split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dcac.config import DCACConfig
from dcac.data.records import ImageRecord, ReIDDataset
from dcac.evaluation.distributed import extract_features_sharded
from dcac.evaluation.targets import score_target

NUM_CLASSIC_SPLITS = 10


def parse_splits(text: str) -> list[int]:
    """``"all"`` -> 0..9, ``"0-4"`` -> 0..4, ``"0,3,7"`` -> [0, 3, 7]."""
    if text == "all":
        return list(range(NUM_CLASSIC_SPLITS))
    try:
        if "-" in text:
            first, last = (int(part) for part in text.split("-", 1))
            return list(range(first, last + 1))
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--splits {text!r}: expected 'all', a range like 0-9 or a list like 0,3,7") from None


def average_metrics(per_split: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The mean of every scalar metric (the CMC curve averaged point by point)."""
    mean: dict[str, Any] = {}
    for key, value in per_split[0].items():
        if key == "cmc":
            mean[key] = [sum(m[key][i] for m in per_split) / len(per_split) for i in range(len(value))]
        elif isinstance(value, (int, float)):
            mean[key] = sum(m[key] for m in per_split) / len(per_split)
    return mean


def evaluate_splits(
    model,
    load_split: Callable[[int], ReIDDataset],
    splits: Sequence[int],
    config: DCACConfig,
    *,
    device="cpu",
    rerank: bool | None = None,
) -> dict[str, Any]:
    """``{"splits": {k: metrics}, "mean": metrics}`` over the given splits of one dataset."""
    datasets = {k: load_split(k) for k in splits}
    pool: dict[str, ImageRecord] = {}
    for dataset in datasets.values():
        for r in dataset.query + dataset.gallery:
            pool.setdefault(r.path, r)
    data = config.data
    feats = extract_features_sharded(
        model,
        list(pool.values()),
        height=data.height,
        width=data.width,
        batch_size=data.test_batch_size,
        num_workers=data.num_workers,
        after_bn=config.eval.after_bn,
        device=device,
    )
    row_of = {path: i for i, path in enumerate(pool)}
    per_split = {}
    for k, dataset in datasets.items():
        query = feats[[row_of[r.path] for r in dataset.query]]
        gallery = feats[[row_of[r.path] for r in dataset.gallery]]
        per_split[k] = score_target(query, gallery, dataset, config, rerank=rerank)
    return {"splits": per_split, "mean": average_metrics(list(per_split.values()))}
