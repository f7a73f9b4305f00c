"""Hub ids, offline: dcac.load / --checkpoint / encoder.weights / diffusion.weights read from a Hugging Face
cache folder that the test builds (models--org--name/snapshots/<sha>/..., refs/main), HF_HUB_OFFLINE=1.

Pushing is tested up to the upload call: the staged folder and model card, and what an ``HfApi`` is asked
to create and upload (a recording subclass; nothing reaches the network).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi

import dcac.api as api
from dcac.cli import main
from dcac.config import load_config
from dcac.hub.download import DIFFUSERS_FILES, HubResolutionError, parse_hub_id, resolve_weights
from dcac.hub.upload import push_run
from dcac.models.build import build_reid_model

SHA = "0123456789abcdef0123456789abcdef01234567"


def _cache_repo(cache: Path, repo_id: str, files: dict[str, Path | bytes]) -> Path:
    """A Hub cache entry as huggingface_hub lays it out (blobs are plain copies here)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / SHA
    for name, content in files.items():
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.read_bytes())
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(SHA)
    return snapshot


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _run_files(run: Path) -> dict[str, Path]:
    return {name: run / name for name in ("config.yaml", "run_info.json", "reid_model.safetensors")}


def test_hub_ids_and_local_paths_are_told_apart(tiny_run):
    assert parse_hub_id("org/name") == ("org/name", None)
    assert parse_hub_id("org/name@v1.0") == ("org/name", "v1.0")
    assert parse_hub_id(str(tiny_run)) is None  # an existing path stays a path
    assert parse_hub_id("./org/name") is None and parse_hub_id("weights/ViT-B-16.pt") is None
    assert parse_hub_id("name") is None and parse_hub_id("a/b/c") is None


def test_load_a_run_from_the_hub_cache(offline_cache, tiny_run, image_tree):
    _cache_repo(offline_cache, "org/name", _run_files(tiny_run))
    files = sorted(image_tree["gallery"].iterdir())
    expected = api.load(tiny_run).extract(files)
    torch.testing.assert_close(api.load("org/name").extract(files), expected)
    torch.testing.assert_close(api.ReIDPredictor.from_pretrained(f"org/name@{SHA}").extract(files), expected)


def test_extract_with_a_hub_checkpoint_and_the_offline_error(offline_cache, tiny_run, image_tree, tmp_path, capsys):
    _cache_repo(offline_cache, "org/name", _run_files(tiny_run))
    out = tmp_path / "g.safetensors"
    assert main(["extract", str(image_tree["gallery"]), "--checkpoint", "org/name", "--out", str(out)]) == 0
    code = main(["extract", str(image_tree["gallery"]), "--checkpoint", "org/missing", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "'org/missing'" in err and "HF_HUB_OFFLINE=1" in err and str(offline_cache) in err
    assert "Traceback" not in err
    with pytest.raises(HubResolutionError, match="no such local path"):
        api.load("org/missing")


def test_encoder_weights_from_the_hub_cache_equal_the_local_folder(offline_cache, tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = load_config("demo")
    vision = CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=64,
        patch_size=16,
        projection_dim=32,
    )
    torch.manual_seed(5)
    CLIPVisionModelWithProjection(vision).save_pretrained(tmp_path / "clip")
    # Extra files a CLIP repository carries (pickled and TF weights) must not be needed or read.
    files = {p.name: p for p in (tmp_path / "clip").iterdir()} | {
        "pytorch_model.bin": b"not a pickle",
        "tf_model.h5": b"x",
    }
    snapshot = _cache_repo(offline_cache, "openai/clip-tiny", files)
    config.encoder.weights = "openai/clip-tiny"
    from_hub = build_reid_model(config, num_ids=4, load_weights=True).encoder.state_dict()
    config.encoder.weights = str(tmp_path / "clip")
    local = build_reid_model(config, num_ids=4, load_weights=True).encoder.state_dict()
    random_init = build_reid_model(load_config("demo"), num_ids=4).encoder.state_dict()
    assert all(torch.equal(from_hub[k], local[k]) for k in local)
    assert any(not torch.equal(local[k], random_init[k]) for k in local)
    assert resolve_weights("openai/clip-tiny", DIFFUSERS_FILES, what="x") == str(snapshot)
    config.encoder.weights = "openai/clip-vit-base-patch16"  # not in this cache
    with pytest.raises(HubResolutionError, match="encoder.weights 'openai/clip-vit-base-patch16'"):
        build_reid_model(config, num_ids=4, load_weights=True)


def test_diffusion_weights_hub_id_resolves_to_the_cached_diffusers_folder(offline_cache):
    snapshot = _cache_repo(
        offline_cache,
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        {"unet/config.json": b"{}", "vae/config.json": b"{}", "model_index.json": b"{}"},
    )
    assert resolve_weights(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", DIFFUSERS_FILES, what="diffusion.weights"
    ) == str(snapshot)
    assert resolve_weights(None, DIFFUSERS_FILES, what="diffusion.weights") is None
    local = str(snapshot)  # a local folder is passed through untouched
    assert resolve_weights(local, DIFFUSERS_FILES, what="diffusion.weights") == local


def _evaluated_run(tiny_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    metrics = {
        "epoch": 7,
        "targets": {"synth_c": {"mAP": 41.25, "rank1": 55.5, "rank5": 70.0, "rank10": 80.0, "mINP": 12.0}},
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_stage_only_writes_the_repository_and_its_model_card(tiny_run, tmp_path):
    run = _evaluated_run(tiny_run, tmp_path)
    out = tmp_path / "staged"
    assert main(["push", str(run), "me/dcac-demo", "--stage-only", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.yaml",
        "metrics.json",
        "reid_model.safetensors",
        "run_info.json",
    ]
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: dcac\n") and "Same person or not?" not in card  # not calibrated
    assert "| synth_c | 41.2 | 55.5 | 70.0 | 80.0 | 12.0 |" in card and "After epoch 7" in card
    assert "training data (sources): synth_a (8 identities, 2 cameras)" in card
    assert "resized to 64×32" in card and "mean [0.5, 0.5, 0.5]" in card and "32-d feature" in card
    assert 'dcac.load("me/dcac-demo")' in card and "arXiv:2502.06619" in card
    # The staged folder is itself a loadable run.
    torch.testing.assert_close(
        api.load(out).extract(torch.zeros(1, 3, 64, 32)), api.load(run).extract(torch.zeros(1, 3, 64, 32))
    )


class _RecordingApi(HfApi):
    """An HfApi whose two network calls record what they were asked to do."""

    def __init__(self) -> None:
        super().__init__(token="hf_test")
        self.calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        kwargs["files"] = {p.name: p.read_bytes() for p in folder.iterdir()}
        self.calls.append(("upload_folder", kwargs))
        return "https://huggingface.co/me/dcac-demo/commit/abc"


def test_push_creates_the_repository_and_uploads_the_staged_run_in_one_commit(tiny_run, tmp_path):
    run = _evaluated_run(tiny_run, tmp_path)
    recorder = _RecordingApi()
    url = push_run(run, "me/dcac-demo", private=True, api=recorder)
    assert url.endswith("/commit/abc")
    (create, args_create), (upload, args_upload) = recorder.calls
    assert create == "create_repo" and args_create == {
        "repo_id": "me/dcac-demo",
        "private": True,
        "exist_ok": True,
        "repo_type": "model",
    }
    assert (
        upload == "upload_folder" and args_upload["repo_id"] == "me/dcac-demo" and args_upload["repo_type"] == "model"
    )
    files = args_upload["files"]
    assert sorted(files) == ["README.md", "config.yaml", "metrics.json", "reid_model.safetensors", "run_info.json"]
    assert files["reid_model.safetensors"] == (run / "reid_model.safetensors").read_bytes()
    assert b"| synth_c | 41.2 |" in files["README.md"]
    assert not Path(args_upload["folder_path"]).exists()  # the staging folder is cleaned up


def test_push_failure_is_one_line_naming_the_repository(tiny_run):
    class _Unreachable(_RecordingApi):
        def create_repo(self, repo_id, **kwargs):
            raise ConnectionError("[Errno 101] Network is unreachable")

    from dcac.hub.upload import HubPushError

    with pytest.raises(HubPushError, match=r"to me/x failed: \[Errno 101\] Network is unreachable"):
        push_run(tiny_run, "me/x", api=_Unreachable())


@pytest.fixture(scope="module")
def small_target(tmp_path_factory) -> Path:
    from dcac.demo.synthetic import write_synthetic

    root = tmp_path_factory.mktemp("target")
    return write_synthetic(
        root, domains=["synth_c"], num_train_ids=2, num_test_ids=6, images_per_id=4, num_distractors=0
    )["synth_c"]


def test_eval_with_a_hub_checkpoint_equals_the_local_run(offline_cache, tiny_run, small_target, tmp_path, capsys):
    _cache_repo(offline_cache, "org/name", _run_files(tiny_run))
    results = {}
    for name, checkpoint in (("local", str(tiny_run)), ("hub", "org/name")):
        out = tmp_path / f"{name}.json"
        assert (
            main(["eval", "--checkpoint", checkpoint, "--target", str(small_target), "--roc", "--out", str(out)]) == 0
        )
        results[name] = json.loads(out.read_text())
    assert results["hub"] == results["local"] and results["hub"][str(small_target)]["mAP"] > 0
    # What writes into the run folder needs a local copy: one line saying how to make it.
    capsys.readouterr()
    for argv in (
        ["eval", "--checkpoint", "org/name", "--target", str(small_target), "--report"],
        ["calibrate", "--checkpoint", "org/name", "--target", str(small_target)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "is a Hub id" in err and "hf download org/name --local-dir RUN" in err and "Traceback" not in err
    assert not list(offline_cache.rglob("report.html")) and not list(offline_cache.rglob("verification.json"))


def test_a_calibrated_run_pushed_to_the_hub_keeps_its_threshold(offline_cache, tiny_run, small_target, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["calibrate", "--checkpoint", str(run), "--target", str(small_target), "--fpr", "0.1"]) == 0
    staged = tmp_path / "staged"
    assert main(["push", str(run), "org/calibrated", "--stage-only", str(staged)]) == 0
    assert (staged / "verification.json").read_bytes() == (run / "verification.json").read_bytes()
    threshold = json.loads((run / "verification.json").read_text())["threshold"]
    card = (staged / "README.md").read_text()
    assert "## Same person or not?" in card and f"**{threshold:.6g}**" in card
    assert 'dcac.compare(image_a, image_b, "org/calibrated")' in card
    _cache_repo(offline_cache, "org/calibrated", {p.name: p for p in staged.iterdir()})
    a, b = sorted((small_target / "query").iterdir())[:2]
    local, hub = api.compare(a, b, str(run)), api.compare(a, b, "org/calibrated")
    assert hub == local and hub.threshold == json.loads((run / "verification.json").read_text())["threshold"]
    _cache_repo(offline_cache, "org/uncalibrated", _run_files(tiny_run))
    with pytest.raises(FileNotFoundError, match="org/uncalibrated has no verification.json: calibrate a local copy"):
        api.compare(a, b, "org/uncalibrated")
