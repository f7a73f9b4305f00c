"""ONNX export: onnxruntime features equal the PyTorch features, for any batch size; the default graph is the
tracker-facing one, with BoxMOT's sidecar next to it."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

import dcac.api as api
from dcac.cli import main
from dcac.inference.image_inputs import find_images
from dcac.inference.onnx_export import export_onnx, onnx_features, read_metadata
from dcac.inference.onnx_inputs import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from dcac.inference.tracker_export import sidecar_path


def test_cli_export_matches_pytorch_with_a_dynamic_batch(tiny_run, image_tree, tmp_path):
    out = tmp_path / "model.onnx"
    args = ["export", "--checkpoint", str(tiny_run), "--format", "onnx", "--input", "pixel_values", "--out", str(out)]
    assert main(args) == 0
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
    path = export_onnx(predictor, tmp_path / "f.onnx", after_bn=False, input_spec=InputSpec("pixel_values"))
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
    path = export_onnx(predictor, tmp_path / "vit_b16.onnx", input_spec=InputSpec("pixel_values"))
    pixels = torch.randn(2, 3, 256, 128)
    got = onnx_features(path, pixels)
    assert got.shape == (2, 512)
    torch.testing.assert_close(got, predictor.extract(pixels), atol=1e-4, rtol=0)


def test_default_export_is_the_tracker_graph_with_boxmots_sidecar(tiny_run, draw_person, tmp_path, capsys):
    out = tmp_path / "reid.onnx"
    assert main(["export", "--checkpoint", str(tiny_run), "--out", str(out)]) == 0
    assert f"tracker metadata (BoxMOT) -> {sidecar_path(out)}" in capsys.readouterr().out
    assert json.loads(read_metadata(out)["dcac_input"])["format"] == "imagenet"
    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar["model_kwargs"] == {"img_size": [64, 32]} and sidecar["model_kwargs_schema_version"] == 1
    assert sidecar["input_normalization"]["mean"] == list(IMAGENET_MEAN) and sidecar["preprocess"] == "resize"
    assert sidecar["dcac_feature_dim"] == 32 and sidecar["source"] == str(tiny_run)
    # Fed as the sidecar says (resize to img_size, /255, ImageNet mean/std): dcac's features.
    images = [draw_person(seed, (64, 32)) for seed in range(3)]
    pixels = torch.stack([torch.from_numpy(np.asarray(image).copy()) for image in images]).permute(0, 3, 1, 2) / 255
    imagenet = (pixels - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(onnx_features(out, imagenet), api.load(tiny_run).extract(images), atol=1e-4, rtol=0)


@pytest.mark.parametrize("input_format", ["pixel_values", "raw"])
def test_opt_in_exports_write_a_sidecar_that_refuses_trackers(input_format, tiny_run, tmp_path, capsys):
    out = tmp_path / f"{input_format}.onnx"
    assert main(["export", "--checkpoint", str(tiny_run), "--input", input_format, "--out", str(out)]) == 0
    assert "is not for trackers" in capsys.readouterr().out
    (why,) = json.loads(sidecar_path(out).read_text())["model_kwargs"]
    assert f"takes {input_format!r} input, not the ImageNet-normalised crops" in why
