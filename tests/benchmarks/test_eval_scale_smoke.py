"""eval_scale.py runs every variant end to end at tiny size and writes a complete result (no timing assertions)."""

from __future__ import annotations

import math

VARIANTS = ["reference", "dcac_rank", "dcac_features", "matmul", "rerank_default", "rerank_dcac", "matmul_rerank"]


def test_eval_scale_tiny_runs_every_variant(tmp_path, run_benchmark):
    result = run_benchmark(
        "eval_scale.py",
        "--sizes",
        "tiny",
        "--threads",
        "2",
        "--repeat",
        "2",
        out=tmp_path / "eval_scale.json",
        printed=("metrics agree: True", "features / matmul floor", "rerank_default / N x N matmul floor"),
    )
    assert result["benchmark"] == "eval_scale" and "--sizes tiny" in result["command"]
    assert result["omp_wait_policy"] == "PASSIVE" and result["machine"]["threads"] == 2
    (size,) = result["results"]
    assert size["size"] == "tiny" and (size["num_query"], size["num_gallery"]) == (300, 1500)
    runs = size["variants"]
    assert list(runs) == VARIANTS
    for name, run in runs.items():
        assert "error" not in run, (name, run.get("error"))
        assert run["seconds"] == min(run["seconds_each_repeat"]) > 0 and len(run["seconds_each_repeat"]) == 2
        assert run["peak_mib"] >= run["input_mib"] > 0
    # The reference loop, the ranking of the dense matrix and the evaluation from features agree on every query.
    assert size["metrics_agree"] is True and not runs["reference"]["extrapolated"]
    assert (
        runs["dcac_features"]["metrics"]["num_valid_queries"]
        == runs["reference"]["subset_metrics"]["num_valid_queries"]
    )
    # Each floor is the fastest of the products it timed, and each ratio is against it.
    matmul = runs["matmul"]
    assert matmul["seconds"] == min(
        matmul["single_call_seconds"], matmul["chunked_seconds"], matmul["column_sliced_seconds"]
    )
    assert math.isclose(size["features_over_matmul"], runs["dcac_features"]["seconds"] / matmul["seconds"])
    floor = runs["matmul_rerank"]
    assert floor["seconds"] == min(floor["row_blocks_seconds"], floor["column_sliced_seconds"])
    for preset in ("default", "dcac"):
        assert math.isclose(size[f"rerank_{preset}_over_floor"], runs[f"rerank_{preset}"]["seconds"] / floor["seconds"])
        assert 0 <= runs[f"rerank_{preset}"]["metrics"]["mAP"] <= 1
