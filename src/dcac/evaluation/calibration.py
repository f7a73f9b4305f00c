"""Choosing a same/different threshold for a trained model (``dcac calibrate``) and storing it with the run.

``calibrate`` extracts a target's query and gallery features, computes the exact verification metrics
(:mod:`dcac.evaluation.roc`) and writes ``RUN/verification.json``: the threshold whose false-positive
rate on that target is at most the chosen FPR, with the feature, metric and target it holds for.
:func:`dcac.compare` reads it back and answers "same person or not?" for two images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcac.config import DCACConfig
from dcac.data.records import ReIDDataset
from dcac.evaluation.distance import compute_distance
from dcac.evaluation.roc import DEFAULT_FPRS, verification_metrics
from dcac.evaluation.targets import extract_target_features
from dcac.hub.download import parse_hub_id
from dcac.storage.checkpoint import write_json_atomic
from dcac.storage.run_folder import VERIFICATION, resolve_run


def target_verification(
    model, target: ReIDDataset, config: DCACConfig, *, fprs=DEFAULT_FPRS, device="cpu", progress: bool = False
) -> dict[str, Any]:
    """Exact verification metrics of ``model`` on ``target`` with the run's feature and metric."""
    query, gallery = extract_target_features(model, target, config, device=device, progress=progress)
    return verification_metrics(
        query,
        gallery,
        *target.labels(),
        metric=config.eval.metric,
        fprs=fprs,
    )


def calibration_record(metrics: dict[str, Any], fpr: float, target: ReIDDataset, config: DCACConfig) -> dict[str, Any]:
    point = metrics["tpr_at_fpr"][f"{fpr:g}"]
    return {
        "threshold": point["threshold"],
        "rule": metrics["rule"],
        "fpr_target": fpr,
        "fpr": point["fpr"],
        "tpr": point["tpr"],
        "eer": metrics["eer"],
        "target": target.name,
        "target_root": target.root,
        "metric": config.eval.metric,
        "after_bn": config.eval.after_bn,
        "flip_test": config.eval.flip_test,
        "num_genuine_pairs": metrics["num_genuine_pairs"],
        "num_impostor_pairs": metrics["num_impostor_pairs"],
    }


def write_calibration(run_dir: str | Path, record: dict[str, Any]) -> Path:
    path = Path(run_dir) / VERIFICATION
    write_json_atomic(path, record)
    return path


def read_calibration(run_dir: str | Path) -> dict[str, Any]:
    """The stored calibration of a run; an error naming the file and the command that writes it."""
    path = Path(run_dir) / VERIFICATION
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run 'dcac calibrate --checkpoint {run_dir} --target ...' "
            "first, or pass threshold= explicitly"
        )
    try:
        record = json.loads(path.read_text())
        float(record["threshold"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a calibration file ({err}); expected a 'threshold' number") from None
    return record


@dataclass(frozen=True)
class Comparison:
    """The answer of :func:`dcac.compare`: the distance, the threshold used and the same/different call."""

    distance: float
    threshold: float
    same: bool
    metric: str

    def __str__(self) -> str:
        verdict = "same person" if self.same else "different people"
        return f"{verdict}: distance {self.distance:.4f} {'<' if self.same else '>='} threshold {self.threshold:.4f} ({self.metric})"


def compare_images(predictor, image_a, image_b, *, threshold: float | None = None) -> Comparison:
    """Distance between two images under the run's feature and metric, and the call at the threshold.

    Without ``threshold`` the run's stored calibration is used (with the feature it was calibrated on).
    """
    config = predictor.config
    after_bn, metric, flip = config.eval.after_bn, config.eval.metric, config.eval.flip_test
    if threshold is None:
        # The folder the weights came from: a local run, or a Hub run's snapshot in the cache.
        run_dir = (
            predictor.weights_file.parent if predictor.weights_file is not None else resolve_run(predictor.source)[0]
        )
        try:
            record = read_calibration(run_dir)
        except FileNotFoundError:
            if parse_hub_id(predictor.source) is None:
                raise
            raise FileNotFoundError(
                f"{predictor.source} has no {VERIFICATION}: calibrate a local copy of the run "
                "('dcac calibrate --checkpoint RUN --target ...'), push it again, or pass threshold= explicitly"
            ) from None
        threshold, after_bn, metric = float(record["threshold"]), bool(record["after_bn"]), str(record["metric"])
        flip = bool(record.get("flip_test", False))  # files written before the flip test existed: without it
    feats = predictor.extract([image_a, image_b], after_bn=after_bn, flip=flip, progress=False)
    distance = float(compute_distance(feats[:1], feats[1:], metric)[0, 0])
    return Comparison(distance, float(threshold), distance < threshold, metric)
