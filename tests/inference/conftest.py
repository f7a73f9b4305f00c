"""A tiny trained-run folder and a small Market-style image tree, shared by the inference tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcac.config import load_config
from dcac.models.build import build_reid_model
from dcac.storage.checkpoint import save_tensors_atomic
from dcac.storage.run_folder import write_run_metadata

NUM_IDS = 8


def make_run(run_dir: Path, num_ids: int = NUM_IDS, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config = load_config("demo")
    model = build_reid_model(config, num_ids=num_ids)
    # Non-trivial BN statistics, so f and f_bn differ and the BNNeck's eval path is really exercised.
    model.bottleneck.running_mean.normal_(0.0, 0.1)
    model.bottleneck.running_var.uniform_(0.5, 2.0)
    save_tensors_atomic(model.state_dict(), run_dir / "reid_model.safetensors")
    write_run_metadata(run_dir, config, {"num_ids": num_ids, "num_cams": 2, "sources": ["synth_a"]})
    return run_dir


@pytest.fixture(scope="session")
def run_factory():
    """``make_run(run_dir, num_ids=..., seed=...)`` for tests that need a run of their own."""
    return make_run


@pytest.fixture(scope="session")
def draw_person():
    """``person_image(seed, size=(h, w))`` for tests that need images of their own."""
    return person_image


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run"))


def person_image(seed: int, size: tuple[int, int] = (48, 24)) -> Image.Image:
    """A blocky random picture (height × width = size): distinct per seed, smooth enough to resize well."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(6, 3, 3), dtype=np.uint8)
    return Image.fromarray(blocks, mode="RGB").resize((size[1], size[0]), Image.NEAREST)


@pytest.fixture(scope="session")
def image_tree(tmp_path_factory) -> dict[str, Path]:
    """``gallery/`` (4 ids × 2 cameras, Market names), ``query/`` (id 1 and 3, camera 1 → new camera 3).

    Each query is a lightly perturbed copy of its identity's camera-1 gallery image, so its nearest
    gallery entry is known.
    """
    root = tmp_path_factory.mktemp("images")
    gallery, query = root / "gallery", root / "query"
    gallery.mkdir()
    query.mkdir()
    for pid in range(1, 5):
        for cam in (1, 2):
            person_image(pid * 10 + cam).save(gallery / f"{pid:04d}_c{cam}s1_000001_00.jpg", quality=95)
    for pid in (1, 3):
        base = np.asarray(person_image(pid * 10 + 1), dtype=np.int16)
        noisy = np.clip(base + np.random.default_rng(pid).integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(query / f"{pid:04d}_c3s1_000002_00.png")
    return {"root": root, "gallery": gallery, "query": query}
