"""A ``dcac calibrate`` threshold as BoxMOT's appearance gates take it (cosine distance ``1 − cos``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dcac.evaluation.distance import compute_distance
from dcac.inference.tracker_export import boxmot_threshold_line, cosine_distance_threshold


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_the_converted_threshold_splits_every_pair_as_the_calibrated_one(metric):
    generator = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(40, 16, generator=generator), dim=1)
    b = F.normalize(torch.randn(50, 16, generator=generator), dim=1)
    distance = compute_distance(a, b, metric)
    cosine_distance = 1 - a @ b.T  # what BoxMOT's trackers compute (scipy's cdist "cosine")
    for threshold in distance.flatten().quantile(torch.tensor([0.1, 0.5, 0.9])).tolist():
        converted = cosine_distance_threshold(threshold, metric)
        agree = (distance < threshold) == (cosine_distance < converted)
        # Pairs within rounding of the threshold may fall either way.
        assert agree.float().mean() >= 0.999


def test_the_line_names_both_trackers_and_warns_about_another_feature():
    line = boxmot_threshold_line({"threshold": 0.8, "metric": "euclidean", "after_bn": True, "flip_test": False})
    assert "appearance_thresh=0.4 (BoT-SORT)" in line and "max_cos_dist=0.4 (StrongSORT)" in line
    assert "another feature" not in line
    flipped = boxmot_threshold_line({"threshold": 0.3, "metric": "cosine", "after_bn": True, "flip_test": True})
    assert "appearance_thresh=0.3" in flipped and "another feature" in flipped
    with pytest.raises(ValueError, match="metric"):
        cosine_distance_threshold(0.5, "manhattan")
