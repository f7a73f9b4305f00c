"""dcac.load + extract: every input form gives the features of the evaluation preprocessing + model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import dcac.api as api
from dcac.data.transforms import build_test_transform
from dcac.inference.image_inputs import ImageInputError, find_images
from dcac.storage.checkpoint import CheckpointError


def _reference(predictor, paths, after_bn=True):
    """The features written out by hand: test transform, model forward, pick f / f_bn, L2-normalise."""
    transform = build_test_transform(64, 32)
    batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        out = predictor.model(batch)
    return F.normalize(out.feat_bn if after_bn else out.feat, dim=1)


def test_folder_extract_matches_reference_in_sorted_order(tiny_run, image_tree):
    model = api.load(tiny_run, device="cpu")
    files = find_images(image_tree["gallery"])
    assert files == sorted(files) and len(files) == 8
    feats = model.extract(image_tree["gallery"], batch_size=3)
    assert feats.shape == (8, 32) and feats.dtype == torch.float32
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(8))
    torch.testing.assert_close(feats, _reference(model, files), atol=1e-5, rtol=1e-5)


def test_before_bn_is_selectable_and_differs(tiny_run, image_tree):
    model = api.load(tiny_run)
    files = find_images(image_tree["gallery"])[:4]
    before = model.extract(files, after_bn=False)
    after = model.extract(files, after_bn=True)
    torch.testing.assert_close(before, _reference(model, files, after_bn=False), atol=1e-5, rtol=1e-5)
    assert (before - after).abs().max() > 1e-3


def test_paths_pil_arrays_and_tensors_agree(tiny_run, image_tree):
    model = api.load(tiny_run)
    files = find_images(image_tree["gallery"])[:3]
    pictures = [Image.open(f).convert("RGB") for f in files]
    by_path = model.extract([str(f) for f in files])
    torch.testing.assert_close(model.extract(pictures), by_path)
    torch.testing.assert_close(model.extract([np.asarray(p) for p in pictures]), by_path)
    torch.testing.assert_close(model.extract(model.preprocess(files), batch_size=2), by_path)
    torch.testing.assert_close(model.extract(files[0]), by_path[:1])


def test_loading_a_weights_file_and_run_info(tiny_run):
    model = api.load(tiny_run / "reid_model.safetensors")
    assert model.image_size == (64, 32) and model.feat_dim == 32
    assert model.run_info["num_ids"] == 8 and not model.model.training


def test_bad_inputs_name_the_problem(tiny_run, tmp_path):
    model = api.load(tiny_run)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ImageInputError, match="broken.jpg"):
        model.extract([broken])
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        model.extract([tmp_path / "missing.jpg"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageInputError, match="no image files"):
        model.extract(empty)
    with pytest.raises(ImageInputError, match="H×W×3 uint8"):
        model.extract([np.zeros((4, 4), dtype=np.float32)])
    with pytest.raises(CheckpointError, match="not a dcac run folder"):
        api.load(tmp_path)
