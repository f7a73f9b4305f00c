"""Synthetic domains: determinism, the real loaders reading them, distinct styles, learnable identities."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcac.data import build_protocol, get_dataset
from dcac.demo.synthetic import MARKER_FILE, write_synthetic

SMALL = {"num_train_ids": 6, "num_test_ids": 5, "images_per_id": 3, "num_distractors": 2}


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def default_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    written = write_synthetic(root, seed=0)
    assert written == {name: root / name for name in ("synth_a", "synth_b", "synth_c", "synth_ms")}
    return root


def test_byte_identical_reruns_and_seed_dependence(tmp_path: Path) -> None:
    first = write_synthetic(tmp_path / "one", seed=4, domains=["synth_b", "synth_ms"], **SMALL)
    second = write_synthetic(tmp_path / "two", seed=4, domains=["synth_b", "synth_ms"], **SMALL)
    other = write_synthetic(tmp_path / "three", seed=5, domains=["synth_b"], **SMALL)
    for name in first:
        assert tree_digest(first[name]) == tree_digest(second[name])
    assert tree_digest(first["synth_b"]).keys() == tree_digest(other["synth_b"]).keys()
    assert tree_digest(first["synth_b"]) != tree_digest(other["synth_b"])


def test_counts_and_layouts(tmp_path: Path) -> None:
    write_synthetic(tmp_path, seed=1, **SMALL)
    for name, cams in (("synth_a", 4), ("synth_b", 6), ("synth_c", 3)):
        dataset = get_dataset(name, tmp_path)
        assert dataset.num_train_pids == 6 and len(dataset.train) == 18 and dataset.num_train_cams == cams
        assert len(dataset.query) == 5 and len(dataset.gallery) == 5 * 2 + 2
        assert sum(r.pid == 0 for r in dataset.gallery) == 2
        with Image.open(dataset.train[0].path) as image:
            assert image.size == (64, 128) and image.format == "JPEG"
    assert (tmp_path / "synth_ms" / "list_val.txt").is_file() and (tmp_path / "synth_ms" / "train").is_dir()
    ms_val, ms_no_val = get_dataset("synth_ms", tmp_path), get_dataset("synth_ms", tmp_path, use_val=False)
    assert len(ms_val.train) == 18 and len(ms_no_val.train) == 18 - 1  # id 4 gives its last image to val
    assert ms_val.num_train_pids == ms_no_val.num_train_pids == 6


def test_overwrite_rules(tmp_path: Path) -> None:
    write_synthetic(tmp_path, domains=["synth_a"], **SMALL)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_synthetic(tmp_path, domains=["synth_a"], **SMALL)
    write_synthetic(tmp_path, domains=["synth_a"], overwrite=True, **{**SMALL, "num_train_ids": 2})
    assert get_dataset("synth_a", tmp_path).num_train_pids == 2  # old files are gone
    (tmp_path / "synth_c").mkdir()
    with pytest.raises(FileExistsError, match=MARKER_FILE):
        write_synthetic(tmp_path, domains=["synth_c"], overwrite=True, **SMALL)
    with pytest.raises(ValueError, match="unknown synthetic domain"):
        write_synthetic(tmp_path, domains=["synth_z"])


def test_protocol_over_synthetic_domains(default_root: Path) -> None:
    protocol = build_protocol(["synth_a", "synth_b"], ["synth_c"], default_root)
    assert protocol.train.num_ids == 48 and protocol.train.num_cams == 4 + 6
    assert len(protocol.targets["synth_c"].query) == 16


def _mean_colours(path: str) -> np.ndarray:
    """Mean and spread of the torso colour and mean leg colour: the identity rules, read off the image."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)[20:120, 22:42] / 255.0
    torso, legs = pixels[10:50].reshape(-1, 3), pixels[55:95].reshape(-1, 3)
    return np.concatenate([torso.mean(0), torso.std(0), legs.mean(0)])


@pytest.mark.parametrize("name", ["synth_a", "synth_b", "synth_c", "synth_ms"])
def test_identities_are_recognisable_across_cameras(default_root: Path, name: str) -> None:
    dataset = get_dataset(name, default_root)
    query = np.stack([_mean_colours(r.path) for r in dataset.query])
    gallery = np.stack([_mean_colours(r.path) for r in dataset.gallery])
    distances = ((query[:, None] - gallery[None]) ** 2).sum(-1)
    hits = 0
    for i, q in enumerate(dataset.query):
        same_view = np.array([g.pid == q.pid and g.camid == q.camid for g in dataset.gallery])
        best = int(np.argmin(np.where(same_view, np.inf, distances[i])))
        hits += dataset.gallery[best].pid == q.pid
    assert hits / len(dataset.query) >= 0.6  # chance is about 1/16


def test_domains_differ_in_style(default_root: Path) -> None:
    means = {
        name: np.mean(
            [
                np.asarray(Image.open(r.path), dtype=np.float32).mean((0, 1))
                for r in get_dataset(name, default_root).train[:40]
            ],
            axis=0,
        )
        for name in ("synth_a", "synth_b", "synth_c", "synth_ms")
    }
    names = list(means)
    gaps = [np.abs(means[a] - means[b]).max() for i, a in enumerate(names) for b in names[i + 1 :]]
    assert min(gaps) > 5.0  # the colour casts and backgrounds move the average colour by several levels
