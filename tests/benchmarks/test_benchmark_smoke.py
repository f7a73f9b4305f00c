"""The speed benchmarks run end to end at tiny size and write complete result files (no timing assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _check_environment(env: dict) -> None:
    assert env["device"] == "cpu" and env["device_name"]
    assert env["torch_version"] and env["versions"]["torch"] and env["versions"]["diffusers"]


def test_train_step_benchmark_tiny(tmp_path, run_benchmark):
    result = run_benchmark(
        "train_step.py", "--tiny", out=tmp_path / "train_step.json", printed=("| variant | precision |",)
    )
    assert result["benchmark"] == "train_step" and result["size"] == "tiny"
    _check_environment(result["environment"])
    sizes = result["sizes"]
    assert sizes["batch_size"] == 8 and sizes["image_hw"] == [64, 32] and sizes["diffusion_view"] == 64
    assert sizes["encoder"] == "tiny" and sizes["unet_vae"] == "tiny"
    rows = {row["name"]: row for row in result["variants"]}
    assert list(rows) == ["reference", "dcac"]
    for row in rows.values():
        assert row["status"] == "ok"
        assert row["images_per_s"] > 0 and row["step_ms_mean"] > 0 and row["timed_steps"] == 2
        assert row["peak_memory_bytes"] > 0 and row["memory_kind"] == "process_peak_rss"
        assert set(row["last_losses"]) >= {"loss", "loss_id", "loss_pcl", "loss_diff"}
    ref, dcac = rows["reference"], rows["dcac"]
    # The reference really is the paper's design, and dcac's default really is dcac's.
    assert ref["requested_precision"] == "fp16" and ref["precision"] == "fp32"  # CPU: fp16 runs as fp32
    assert ref["unet_attention_processors"] == ["AttnProcessor"] == ref["vae_attention_processors"]
    assert ref["unet_gradient_checkpointing"] and not ref["cache_latents"]
    assert ref["latent_cache_build_images_per_s"] is None
    assert dcac["precision"] == "bf16" and dcac["cache_latents"] and not dcac["unet_gradient_checkpointing"]
    assert dcac["unet_attention_processors"] == ["AttnProcessor2_0", "SingleTokenCrossAttnProcessor"]
    assert dcac["latent_cache_build_images_per_s"] > 0
    assert dcac["frozen_in_autocast_dtype"] and dcac["encoder_checkpointing"] and not ref["encoder_checkpointing"]
    assert not dcac["compiled"] and not ref["compiled"]  # train.compile=auto never compiles on the CPU
    assert result["speedup_dcac_vs_reference"] > 0 and result["memory_dcac_vs_reference"] > 0
    # Model FLOPs: one count for the step, every row's TFLOP/s from it; a CPU has no peak, so no MFU.
    flops = result["model_flops"]
    assert (
        flops["status"] == "ok"
        and flops["flops_per_image"] == flops["forward_per_image"] + flops["backward_per_image"] > 0
    )
    for row in rows.values():
        assert row["tflops_per_s"] == row["images_per_s"] * flops["flops_per_image"] / 1e12
        assert row["mfu"] is None and row["peak_tflops"] is None
    # The first-step fingerprint: the same batch, latents, timesteps and noise give comparable gradients.
    assert dcac["probe_grad_diff"] == 0 and 0 <= ref["probe_grad_diff"] < float("inf")
    assert abs(ref["probe_loss"] - dcac["probe_loss"]) <= 0.05 * abs(ref["probe_loss"])
    assert result["command"].startswith("python benchmarks/train_step.py") and result["created_utc"]


def test_train_step_benchmark_with_the_augmentation_on_the_device(tmp_path, run_benchmark):
    result = run_benchmark(
        "train_step.py",
        "--tiny",
        "--variants",
        "dcac+device_augment",
        out=tmp_path / "train_step.json",
        printed=("| variant |",),
    )
    (row,) = result["variants"]
    assert row["name"] == "dcac+device_augment" and row["augment_on_device"] and row["status"] == "ok"
    assert row["images_per_s"] > 0 and all(v == v for v in row["last_losses"].values())


def test_extract_benchmark_tiny(tmp_path, run_benchmark):
    result = run_benchmark("extract.py", "--tiny", out=tmp_path / "extract.json", printed=("| precision | batch |",))
    assert result["benchmark"] == "extract" and result["size"] == "tiny"
    _check_environment(result["environment"])
    assert result["sizes"]["image_hw"] == [64, 32] and result["sizes"]["encoder"] == "tiny"
    rows = result["configurations"]
    assert [(r["precision"], r["batch_size"]) for r in rows] == [("fp32", 8), ("fp32", 32), ("bf16", 8), ("bf16", 32)]
    for row in rows:
        assert row["status"] == "ok" and row["images_per_s"] > 0 and row["peak_memory_bytes"] > 0
        assert (
            row["tflops_per_s"] == row["images_per_s"] * result["model_flops_per_image"] / 1e12 and row["mfu"] is None
        )
    assert result["model_flops_per_image"] > 0
    # fp32 at another batch size gives the same features; bf16 gives close ones.
    assert rows[1]["max_abs_feature_diff_vs_first"] < 1e-5
    assert 0 < rows[2]["max_abs_feature_diff_vs_first"] < 0.05


def test_data_loading_benchmark_tiny(tmp_path, run_benchmark):
    result = run_benchmark(
        "data_loading.py",
        "--tiny",
        "--target",
        "100",
        out=tmp_path / "dl.json",
        printed=("| augment on | workers | images/s |",),
    )
    assert result["benchmark"] == "data_loading" and result["batch_size"] == 16 and result["target_images_per_s"] == 100
    rows = result["rows"]
    assert [(row["augment_on"], row["workers"]) for row in rows] == [
        ("loader", 0),
        ("loader", 1),
        ("device", 0),
        ("device", 1),
    ]
    assert all(row["images_per_s"] > 0 and row["first_batch_s"] > 0 for row in rows)
    assert all(row["augment_images_per_s"] > 0 for row in rows if row["augment_on"] == "device")
    assert all(
        result["workers_for_target"][k] >= 1 and result["best_images_per_s_per_worker"][k] > 0
        for k in ("loader", "device")
    )


def _run_gpu_session(out: Path, parts: str, **env: str) -> None:
    """benchmarks/gpu_session.sh at tiny size on the CPU, writing into ``out``."""
    proc = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_session.sh"), "--tiny", parts],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OUT": str(out), "PYTHON": sys.executable, **env},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_gpu_session_script_dry_run(tmp_path):
    """The one-command GPU session runs its parts at tiny size and writes each JSON and the log."""
    _run_gpu_session(tmp_path, "extract,loader")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data_loading.json", "extract.json", "log"]
    assert json.loads((tmp_path / "extract.json").read_text())["size"] == "tiny"
    assert "cpus:" in (tmp_path / "log").read_text()


def test_gpu_session_step_variants_can_be_chosen(tmp_path):
    """STEP_VARIANTS replaces the step part's variants (the official code's row comes along where .official/ exists)."""
    _run_gpu_session(tmp_path, "step", STEP_VARIANTS="dcac")
    variants = [v["name"] for v in json.loads((tmp_path / "train_step.json").read_text())["variants"]]
    assert [name for name in variants if name != "official"] == ["dcac"]
