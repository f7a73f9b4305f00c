"""An export is never "checked against PyTorch" on NaN: non-finite weights are refused by name before exporting
(int8 quantization would otherwise fail deep inside onnxruntime), and non-finite features fail the check."""

from __future__ import annotations

import pytest
import torch

import dcac.api as api
from dcac.inference.onnx_export import ExportMismatchError, export_onnx
from dcac.storage.tensor_checks import NonFiniteWeightsError


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_non_finite_weights_are_refused_before_exporting(tiny_run, tmp_path, precision):
    predictor = api.load(tiny_run)
    with torch.no_grad():
        predictor.model.bottleneck.weight[2] = float("nan")
    with pytest.raises(NonFiniteWeightsError, match=r"'model.bottleneck.weight' holds 1 NaN/infinite values"):
        export_onnx(predictor, tmp_path / "m.onnx", precision=precision)
    assert list(tmp_path.iterdir()) == []


# The overflow is the point of the test: onnxscript's batch-norm fusion divides by the overflowing weights and warns.
@pytest.mark.filterwarnings("ignore:overflow encountered in divide:RuntimeWarning")
def test_non_finite_features_fail_the_check(tiny_run, tmp_path):
    predictor = api.load(tiny_run)
    with torch.no_grad():
        predictor.model.bottleneck.weight.fill_(3e38)  # finite, but f_bn overflows to inf
    with pytest.raises(ExportMismatchError, match="m.onnx: the features hold NaN/inf values"):
        export_onnx(predictor, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
