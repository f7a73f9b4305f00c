"""The search-at-scale benchmark runs end to end at tiny size and writes a complete result file (no timings asserted)."""

from __future__ import annotations


def test_search_scale_benchmark_tiny(tmp_path, run_benchmark):
    result = run_benchmark(
        "search_scale.py",
        "--tiny",
        "--threads",
        "1",
        out=tmp_path / "search.json",
        printed=("| variant | seconds | × floor |",),
    )
    assert result["benchmark"] == "search_scale" and result["sizes"]["gallery"] == 3000
    assert result["rerank"] == {"k1": 20, "k2": 6, "lambda_value": 0.3}
    runs = result["variants"]
    assert set(runs) == {"rerank", "floor", "plain"} and not any("error" in run for run in runs.values())
    assert runs["floor"]["over_floor"] == 1.0 and all(run["peak_mib"] > 0 for run in runs.values())
    # The re-ranked search really re-ranks: its nearest entries differ from the plain search's for some queries.
    assert runs["rerank"]["top1"] != runs["plain"]["top1"] and len(runs["rerank"]["top1"]) == 100
