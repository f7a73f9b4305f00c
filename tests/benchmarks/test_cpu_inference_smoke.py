"""The CPU-inference benchmark runs end to end at tiny size and writes a complete result file (no timing
assertions: the figures depend on the machine and its load)."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_cpu_inference_benchmark_tiny(tmp_path, run_benchmark):
    pytest.importorskip("onnxruntime")
    result = run_benchmark(
        "cpu_inference.py",
        "--tiny",
        "--threads",
        "1",
        out=tmp_path / "cpu.json",
        printed=("| path | batch | threads |", "of the sgemm peak"),
    )
    assert result["benchmark"] == "cpu_inference" and result["size"] == "tiny"
    assert result["environment"]["onnxruntime_version"]
    assert result["sgemm_peak_flop_per_s"]["1"] > 0 and result["model_flops_per_image"] > 0
    rows = result["rows"]
    assert {(r["path"], r["batch"]) for r in rows} == {
        (p, b) for p in ("torch fp32", "torch bf16", "ort fp32", "ort int8") for b in (1, 16)
    }
    peak = result["sgemm_peak_flop_per_s"]["1"]
    for row in rows:
        assert row["threads"] == 1 and row["images_per_s"] > 0 and row["load_before"] >= 0
        # MFU is taken against the larger of the first peak and the one measured next to the row.
        denominator = max(peak, row["sgemm_next_to_row_flop_per_s"])
        assert row["mfu_vs_sgemm"] == pytest.approx(row["images_per_s"] * result["model_flops_per_image"] / denominator)
    assert set(result["summary"]["ort_int8_over_fp32_images_per_s"]) == {"batch 1 threads 1", "batch 16 threads 1"}
    assert result["summary"]["fastest"] in rows
