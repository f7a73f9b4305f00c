"""An imported released checkpoint is evaluated as the official code evaluated it: single-source test images are
resized bilinearly there (``train.compat=official``); ``dcac import --no-compat`` keeps dcac's bicubic resize."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from test_official_import import official_reid_layout, reference_feature

import dcac
from dcac.cli import main
from dcac.models.build import load_reid_model

NUM_IDS = 6


def _pixels(image: Image.Image, resample: int) -> torch.Tensor:
    resized = np.asarray(image.resize((32, 64), resample), dtype=np.float32)  # demo preset: 64 x 32
    return ((torch.from_numpy(resized).permute(2, 0, 1) / 255.0 - 0.5) / 0.5)[None]


@pytest.mark.parametrize(("flags", "resize"), [([], "bilinear"), (["--no-compat"], "bicubic")])
def test_imported_single_source_run_resizes_as_the_official_code(tmp_path, capsys, flags, resize):
    state = official_reid_layout(num_ids=NUM_IDS)
    ckpt = tmp_path / "source_synth.pth"
    torch.save(state, ckpt)
    run = tmp_path / "run"
    argv = ["import", str(ckpt), "data.sources=[synth_a]", "--out", str(run), "--config", "demo", *flags]
    assert main(argv) == 0
    assert f"test images resized {resize}" in capsys.readouterr().out
    _, config, info = load_reid_model(run)
    assert info["eval_interpolation"] == resize
    assert config.train.compat == ("none" if flags else "official")
    # End to end: the loaded run's features of an image of another size are those of the named resize.
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (37, 23, 3), dtype=np.uint8))
    ours = dcac.load(run).extract([image])
    filters = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
    expected = reference_feature(state, _pixels(image, filters.pop(resize)))
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)
    (other,) = filters.values()
    assert (ours - reference_feature(state, _pixels(image, other))).abs().max() > 1e-3  # the check can fail


def test_multi_source_import_keeps_bicubic(tmp_path):
    ckpt = tmp_path / "source_synth.pth"
    torch.save(official_reid_layout(num_ids=2 * NUM_IDS), ckpt)
    assert main(["import", str(ckpt), "--out", str(tmp_path / "run"), "--config", "demo"]) == 0
    _, config, info = load_reid_model(tmp_path / "run")
    assert config.train.compat == "official" and info["eval_interpolation"] == "bicubic"
