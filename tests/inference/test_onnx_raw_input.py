"""Self-contained ONNX exports: raw uint8 crops of any size, ImageNet-normalised crops, fp16 and int8."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dcac.api as api
from dcac.cli import main
from dcac.inference.onnx_export import onnx_features, read_metadata
from dcac.inference.onnx_inputs import IMAGENET_MEAN, IMAGENET_STD, InputSpec


def _crops(draw_person, size: tuple[int, int], count: int = 3) -> list:
    return [draw_person(seed, size) for seed in range(count)]


def _nhwc(images) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(image) for image in images]))


@pytest.fixture(scope="module")
def raw_model(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "raw.onnx"
    assert main(["export", "--checkpoint", str(tiny_run), "--input", "raw", "--out", str(out)]) == 0
    return out


def test_raw_crops_of_any_size_give_the_pytorch_pipelines_features(raw_model, tiny_run, draw_person):
    predictor = api.load(tiny_run)
    for size in ((100, 41), (30, 17), (64, 32)):  # smaller, larger and equal to the run's 64×32
        images = _crops(draw_person, size)
        got = onnx_features(raw_model, _nhwc(images))
        # Against PIL's bicubic resize + normalisation (extract): only PIL's uint8 rounding differs.
        cosine = F.cosine_similarity(got, predictor.extract(images), dim=1)
        assert cosine.min() > 0.999, (size, cosine)
    metadata = read_metadata(raw_model)
    contract = json.loads(metadata["dcac_input"])
    assert contract["format"] == "raw" and contract["dtype"] == "uint8" and contract["channel_order"] == "RGB"
    assert contract["shape"] == "batch x height x width x 3" and contract["resized_to"] == [64, 32]
    assert metadata["dcac_feature_dim"] == "32" and "bicubic" in metadata["dcac_interpolation"]
    assert json.loads(metadata["dcac_normalization"]) == {"mean": [0.5] * 3, "std": [0.5] * 3, "resize": "bicubic"}


def test_bgr_nchw_export_reads_opencv_order(raw_model, tiny_run, tmp_path, draw_person):
    out = tmp_path / "bgr.onnx"
    args = ["export", "--checkpoint", str(tiny_run), "--input", "raw", "--layout", "nchw", "--channel-order", "bgr"]
    assert main([*args, "--out", str(out)]) == 0
    rgb = _nhwc(_crops(draw_person, (90, 40)))
    bgr_nchw = rgb.flip(3).permute(0, 3, 1, 2).contiguous()
    torch.testing.assert_close(onnx_features(out, bgr_nchw), onnx_features(raw_model, rgb), atol=1e-5, rtol=0)
    assert json.loads(read_metadata(out)["dcac_input"])["channel_order"] == "BGR"


def test_imagenet_input_matches_a_tracker_feeding_imagenet_normalised_crops(tiny_run, tmp_path, draw_person):
    out = tmp_path / "imagenet.onnx"
    assert main(["export", "--checkpoint", str(tiny_run), "--input", "imagenet", "--out", str(out)]) == 0
    predictor = api.load(tiny_run)
    images = _crops(draw_person, (64, 32))  # a tracker resizes to the model's size itself
    pixels = torch.from_numpy(np.stack([np.asarray(i) for i in images])).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    got = onnx_features(out, (pixels - mean) / std)
    torch.testing.assert_close(got, predictor.extract(images), atol=1e-4, rtol=0)
    # Without the adapter (the opt-in pixel_values graph) the same crops give other features.
    plain = tmp_path / "plain.onnx"
    assert main(["export", "--checkpoint", str(tiny_run), "--input", "pixel_values", "--out", str(plain)]) == 0
    assert F.cosine_similarity(onnx_features(plain, (pixels - mean) / std), got, dim=1).min() < 0.999


@pytest.mark.parametrize("precision, min_cosine", [("fp16", 0.999), ("int8", 0.98)])
def test_reduced_precision_variants_stay_close_to_pytorch(
    precision, min_cosine, raw_model, tiny_run, tmp_path, draw_person
):
    out = tmp_path / f"{precision}.onnx"
    assert (
        main(["export", "--checkpoint", str(tiny_run), "--input", "raw", "--precision", precision, "--out", str(out)])
        == 0
    )
    crops = _nhwc(_crops(draw_person, (80, 35), count=4))
    cosine = F.cosine_similarity(onnx_features(out, crops), onnx_features(raw_model, crops), dim=1)
    assert cosine.min() > min_cosine and cosine.min() < 1 - 1e-9  # really converted, and still close
    assert read_metadata(out)["dcac_precision"] == precision
    assert out.stat().st_size < raw_model.stat().st_size
    assert not list(tmp_path.glob(".*.tmp"))


def test_layout_options_apply_to_raw_input_only(tiny_run, tmp_path, capsys):
    code = main(["export", "--checkpoint", str(tiny_run), "--channel-order", "bgr", "--out", str(tmp_path / "x.onnx")])
    assert code == 2 and "layout/channel order apply to 'raw' only" in capsys.readouterr().err
    with pytest.raises(ValueError, match="ONNX input format"):
        InputSpec("jpeg")


def test_an_official_single_source_run_exports_its_bilinear_resize(tmp_path, draw_person):
    """A run evaluated as the official code did (bilinear test resize, e.g. an imported one) exports that resize."""
    from dcac.config import load_config
    from dcac.models.build import build_reid_model
    from dcac.storage.checkpoint import save_tensors_atomic
    from dcac.storage.run_folder import write_run_metadata

    config = load_config("demo", ["train.compat=official", "data.sources=[synth_a]"])
    torch.manual_seed(0)
    run = tmp_path / "official_run"
    save_tensors_atomic(build_reid_model(config, num_ids=8).state_dict(), run / "reid_model.safetensors")
    write_run_metadata(run, config, {"num_ids": 8, "num_cams": 2, "sources": ["synth_a"]})
    out = tmp_path / "raw.onnx"
    assert main(["export", "--checkpoint", str(run), "--input", "raw", "--out", str(out)]) == 0
    predictor = api.load(run)
    assert predictor.transform.interpolation == "bilinear"
    images = _crops(draw_person, (100, 41))
    cosine = F.cosine_similarity(onnx_features(out, _nhwc(images)), predictor.extract(images), dim=1)
    assert cosine.min() > 0.999, cosine
    metadata = read_metadata(out)
    assert json.loads(metadata["dcac_normalization"])["resize"] == "bilinear"
    assert metadata["dcac_interpolation"].startswith("bilinear")
