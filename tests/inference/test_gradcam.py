"""Grad-CAM maps of the Re-ID encoder and ``dcac explain``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import dcac.api as api
from dcac.cli import main
from dcac.inference.gradcam import grad_cam, jet_colormap, overlay_heatmap
from dcac.inference.image_inputs import find_images


def test_jet_colormap_endpoints():
    colours = jet_colormap(np.array([0.0, 0.5, 1.0]))
    assert colours.tolist() == [[0, 0, 128], [128, 255, 128], [128, 0, 0]]


def test_maps_are_normalised_non_constant_and_follow_the_input(tiny_run, image_tree):
    predictor = api.load(tiny_run)
    files = find_images(image_tree["gallery"])[:2]
    pixels = predictor.preprocess(files)
    cams = grad_cam(predictor.model, pixels)
    assert cams.shape == (2, 4, 2)  # 64×32 input, 16-pixel patches
    assert cams.min() >= 0 and cams.max() <= 1
    for cam in cams:
        assert cam.max() == 1 and cam.min() == 0  # scaled per image, and not flat
    assert (cams[0] - cams[1]).abs().max() > 1e-3
    # One image's map does not depend on the rest of the batch (eval-mode BN, per-image attention).
    torch.testing.assert_close(grad_cam(predictor.model, pixels[1:]), cams[1:], atol=1e-5, rtol=1e-4)
    assert not predictor.model.training


def test_norm_target_and_models_without_classifier(tmp_path, image_tree, run_factory):
    run = run_factory(tmp_path / "run", num_ids=0)
    predictor = api.load(run)
    pixels = predictor.preprocess(find_images(image_tree["gallery"])[:1])
    auto, norm = grad_cam(predictor.model, pixels), grad_cam(predictor.model, pixels, target="norm")
    torch.testing.assert_close(auto, norm)
    assert norm.max() == 1
    with pytest.raises(ValueError, match="ID classifier"):
        grad_cam(predictor.model, pixels, target="logit")


def test_overlay_keeps_the_image_size_and_blends():
    image = Image.new("RGB", (20, 40), (255, 255, 255))
    cam = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    out = overlay_heatmap(image, cam, alpha=0.5)
    assert out.size == (20, 40)
    pixels = np.asarray(out)
    assert tuple(pixels[0, 0]) == (127, 127, 191)  # white blended with jet's dark-blue end
    assert pixels[5, 18, 0] > 180 and pixels[5, 18, 2] < 150  # the hot corner turns red


def test_explain_cli_writes_one_png_per_image(tiny_run, image_tree, tmp_path, draw_person):
    odd = tmp_path / "odd"
    odd.mkdir()
    draw_person(99, size=(90, 37)).save(odd / "0001_c1s1_000001_00.jpg")  # same name as a gallery image
    out = tmp_path / "cams"
    inputs = [str(p) for p in find_images(image_tree["gallery"])[:2]] + [str(odd)]
    assert main(["explain", *inputs, "--checkpoint", str(tiny_run), "--out", str(out), "--device", "cpu"]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["0001_c1s1_000001_00_1_cam.png", "0001_c1s1_000001_00_cam.png", "0001_c2s1_000001_00_cam.png"]
    with Image.open(out / "0001_c1s1_000001_00_1_cam.png") as cam:
        assert cam.format == "PNG" and cam.size == (37, 90)
    with Image.open(out / "0001_c1s1_000001_00_cam.png") as a, Image.open(out / "0001_c2s1_000001_00_cam.png") as b:
        assert a.size == (24, 48) and np.asarray(a).std() > 0
        assert not np.array_equal(np.asarray(a), np.asarray(b))
