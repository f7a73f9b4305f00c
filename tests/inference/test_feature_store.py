"""Features files: features and names travel together and come back identical."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dcac.inference.feature_store import FeatureFileError, FeatureSet, load_features, save_features


def test_round_trip_and_plain_safetensors_metadata(tmp_path):
    feats = torch.randn(3, 5)
    names = ["a/0001_c1.jpg", "b/0002_c2.jpg", "ü.png"]
    save_features(tmp_path / "f.safetensors", FeatureSet(feats, names, tmp_path, False, "runs/x"))
    back = load_features(tmp_path / "f.safetensors")
    assert torch.equal(back.features, feats)
    assert back.names == names and back.after_bn is False and back.checkpoint == "runs/x"
    assert back.paths()[0] == tmp_path.resolve() / "a/0001_c1.jpg"
    with safe_open(str(tmp_path / "f.safetensors"), framework="pt") as handle:
        assert json.loads(handle.metadata()["names"]) == names


def test_mismatched_or_foreign_files_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="3 feature rows but 2 names"):
        save_features(tmp_path / "x.safetensors", FeatureSet(torch.zeros(3, 2), ["a", "b"], Path("."), True, ""))
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(FeatureFileError, match="model.safetensors.*no 'features' tensor"):
        load_features(tmp_path / "model.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(FeatureFileError, match="junk.safetensors"):
        load_features(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_features(tmp_path / "nope.safetensors")
