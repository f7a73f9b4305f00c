"""The slice-fusion bound benchmark runs end to end at tiny size and writes a complete result (no timing assertions)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from eval_slice_fusion import MEASUREMENTS


def test_eval_slice_fusion_tiny(tmp_path, run_benchmark):
    result = run_benchmark(
        "eval_slice_fusion.py",
        "--size",
        "tiny",
        "--threads",
        "2",
        "--repeat",
        "2",
        out=tmp_path / "fusion.json",
        printed=("| measurement | seconds |", "fused lower bound"),
    )
    assert result["benchmark"] == "eval_slice_fusion" and result["created_utc"]
    assert result["command"].startswith("python ") and "eval_slice_fusion.py" in result["command"]
    run = result["result"]
    assert run["size"] == "tiny" and run["shape"] == [300, 1500]
    # Both designs find the same candidates: the bound extracts what match_ranks extracts.
    assert run["candidates_equal"] and 0 < run["candidate_density"] < 1
    seconds = run["seconds"]
    assert set(seconds) == set(MEASUREMENTS)
    for name, best in seconds.items():
        assert best == min(run["seconds_each_repeat"][name]) > 0 and len(run["seconds_each_repeat"][name]) == 2
    assert math.isclose(run["counting_seconds"], seconds["ranking_in_memory"] - seconds["extraction_in_memory"])
    assert math.isclose(run["fused_lower_bound_seconds"], seconds["extraction_in_cache"] + run["counting_seconds"])
    assert math.isclose(
        run["fused_lower_bound_over_product_into_cache"],
        run["fused_lower_bound_seconds"] / seconds["product_into_cache"],
    )
