"""The ONNX-variant and gallery-index benchmarks run end to end at tiny size and write complete JSON."""

from __future__ import annotations

import pytest


def test_ann_index_benchmark_tiny(tmp_path, run_benchmark):
    pytest.importorskip("faiss")
    result = run_benchmark(
        "ann_index.py",
        "--tiny",
        "--gallery",
        "2000",
        "--queries",
        "100",
        out=tmp_path / "a.json",
        printed=("| index | recall@10 |",),
    )
    rows = {row["index"]: row for row in result["indexes"]}
    assert rows["exact"]["recall_at_10"] == 1.0  # faiss's flat index agrees with dcac.rank
    assert all(0.0 < row["recall_at_10"] <= 1.0 and row["queries_per_s"] > 0 for row in rows.values())
    assert result["sizes"]["gallery"] == 2000 and result["environment"]["faiss_version"]


@pytest.mark.slow
def test_onnx_variants_benchmark_tiny(tmp_path, run_benchmark):
    result = run_benchmark(
        "onnx_variants.py", "--tiny", "--images", "8", out=tmp_path / "o.json", printed=("| variant |",)
    )
    rows = {row["variant"]: row for row in result["variants"]}
    assert list(rows) == ["pixel_values fp32", "raw fp32", "raw fp16", "raw int8"]
    assert rows["pixel_values fp32"]["cos_vs_pipeline_min"] > 0.9999
    assert all(row["cos_vs_graph_min"] > 0.98 and row["images_per_s"] > 0 for row in rows.values())
