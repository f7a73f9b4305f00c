"""ONNX export: onnxruntime features equal the PyTorch features, for any batch size."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

import dcac.api as api
from dcac.cli import main
from dcac.inference.image_inputs import find_images
from dcac.inference.onnx_export import export_onnx, onnx_features


def test_cli_export_matches_pytorch_with_a_dynamic_batch(tiny_run, image_tree, tmp_path):
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(tiny_run), "--format", "onnx", "--out", str(out)]) == 0
    predictor = api.load(tiny_run)
    files = find_images(image_tree["gallery"])
    for batch in (1, 5, 8):
        pixels = predictor.preprocess(files[:batch])
        got = onnx_features(out, pixels)
        assert got.shape == (batch, 32)
        torch.testing.assert_close(got, predictor.extract(pixels), atol=1e-4, rtol=0)
    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(metadata["dcac_input_size"]) == [64, 32] and metadata["dcac_feature"] == "f_bn"
    assert json.loads(metadata["dcac_normalization"])["mean"] == [0.5, 0.5, 0.5]


def test_before_bn_export_and_default_location(tiny_run, tmp_path):
    predictor = api.load(tiny_run)
    path = export_onnx(predictor, tmp_path / "f.onnx", after_bn=False)
    pixels = torch.randn(3, 3, 64, 32)
    torch.testing.assert_close(
        onnx_features(path, pixels), predictor.extract(pixels, after_bn=False), atol=1e-4, rtol=0
    )
    assert (onnx_features(path, pixels) - predictor.extract(pixels)).abs().max() > 1e-3
    assert main(["export", "--checkpoint", str(tiny_run)]) == 0
    assert (tiny_run / "reid_model.onnx").is_file()


def test_export_of_a_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tmp_path / "none")]) == 2
    assert "none" in capsys.readouterr().err


@pytest.mark.slow
def test_full_size_vit_b16_export(tmp_path):
    """The paper's model size (ViT-B/16 at 256×128, random weights): export and onnxruntime agree."""
    from dcac.config import load_config
    from dcac.models.build import build_reid_model
    from dcac.storage.checkpoint import save_tensors_atomic
    from dcac.storage.run_folder import write_run_metadata

    config = load_config(None)
    torch.manual_seed(0)
    model = build_reid_model(config, num_ids=751)
    save_tensors_atomic(model.state_dict(), tmp_path / "reid_model.safetensors")
    write_run_metadata(tmp_path, config, {"num_ids": 751, "num_cams": 6, "sources": ["market1501"]})
    predictor = api.load(tmp_path)
    path = export_onnx(predictor, tmp_path / "vit_b16.onnx")
    pixels = torch.randn(2, 3, 256, 128)
    got = onnx_features(path, pixels)
    assert got.shape == (2, 512)
    torch.testing.assert_close(got, predictor.extract(pixels), atol=1e-4, rtol=0)
