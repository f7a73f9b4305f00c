"""Checks of a stored calibration (``verification.json``): complete, sane, and made on the weights in use.

A threshold holds for the distances of the model it was chosen on; applied to a retrained or imported model's
distances it gives confident wrong answers.  ``dcac calibrate`` therefore records the SHA-256 of the weights
file's bytes (as ``dcac extract`` does for features), and :func:`dcac.compare` refuses a calibration whose hash
is not that of the weights it is about to use.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

# The distances of L2-normalised features: squared Euclidean in [0, 4], cosine distance (1 - cos) in [0, 2];
# float32 arithmetic strays a little outside, hence the slack.
DISTANCE_RANGES = {"euclidean": (0.0, 4.0), "cosine": (0.0, 2.0)}
_SLACK = 1e-3
_SHA256 = re.compile(r"[0-9a-f]{64}")


class CalibrationError(ValueError):
    """A calibration that cannot be used: damaged, incomplete, or made for other weights (the message says which)."""


def checked_calibration(record: Any, path: Path) -> dict[str, Any]:
    """``record`` as read from ``path``, with every field ``dcac.compare`` uses checked."""
    if not isinstance(record, dict):
        raise CalibrationError(
            f"{path}: expected a JSON object as 'dcac calibrate' writes, got {type(record).__name__}"
        )
    missing = [k for k in ("threshold", "metric", "after_bn", "weights_sha256") if k not in record]
    if missing:
        hint = " (written by an older dcac)" if missing == ["weights_sha256"] else ""
        raise CalibrationError(f"{path}: missing {', '.join(missing)}{hint}; run 'dcac calibrate' again")
    metric, threshold = record["metric"], record["threshold"]
    if metric not in DISTANCE_RANGES:
        raise CalibrationError(f"{path}: 'metric' is {metric!r}, expected one of {', '.join(DISTANCE_RANGES)}")
    low, high = DISTANCE_RANGES[metric]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise CalibrationError(f"{path}: 'threshold' is {threshold!r}, expected a finite number")
    if not low - _SLACK <= threshold <= high + _SLACK:
        raise CalibrationError(
            f"{path}: 'threshold' {threshold} is outside the {metric} distances of unit features [{low:g}, {high:g}]"
        )
    for key in ("after_bn", "flip_test"):
        if key in record and not isinstance(record[key], bool):
            raise CalibrationError(f"{path}: '{key}' is {record[key]!r}, expected true or false")
    if not isinstance(record["weights_sha256"], str) or not _SHA256.fullmatch(record["weights_sha256"]):
        raise CalibrationError(f"{path}: 'weights_sha256' is {record['weights_sha256']!r}, expected 64 hex digits")
    return record


def check_calibrated_weights(record: dict[str, Any], path: Path, weights_file: Path, weights_sha256: str) -> None:
    """Refuse a calibration made on other weights than ``weights_file`` (whose hash is ``weights_sha256``)."""
    if record["weights_sha256"] != weights_sha256:
        raise CalibrationError(
            f"{path} was calibrated on other weights than {weights_file} (SHA-256 {record['weights_sha256'][:12]}... "
            f"vs {weights_sha256[:12]}...): the model was retrained or replaced since; run 'dcac calibrate' again"
        )
