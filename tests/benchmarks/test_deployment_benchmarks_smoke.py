"""The ONNX-variant and gallery-index benchmarks run end to end at tiny size and write complete JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(args: list[str], out: Path, header: str) -> dict:
    proc = subprocess.run([sys.executable, *args, "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert header in proc.stdout
    return json.loads(out.read_text())


def test_ann_index_benchmark_tiny(tmp_path):
    pytest.importorskip("faiss")
    result = _run(
        [str(BENCHMARKS / "ann_index.py"), "--tiny", "--gallery", "2000", "--queries", "100"],
        tmp_path / "a.json",
        "| index | recall@10 |",
    )
    rows = {row["index"]: row for row in result["indexes"]}
    assert rows["exact"]["recall_at_10"] == 1.0  # faiss's flat index agrees with dcac.rank
    assert all(0.0 < row["recall_at_10"] <= 1.0 and row["queries_per_s"] > 0 for row in rows.values())
    assert result["sizes"]["gallery"] == 2000 and result["environment"]["faiss_version"]


@pytest.mark.slow
def test_onnx_variants_benchmark_tiny(tmp_path):
    result = _run([str(BENCHMARKS / "onnx_variants.py"), "--tiny", "--images", "8"], tmp_path / "o.json", "| variant |")
    rows = {row["variant"]: row for row in result["variants"]}
    assert list(rows) == ["pixel_values fp32", "raw fp32", "raw fp16", "raw int8"]
    assert rows["pixel_values fp32"]["cos_vs_pipeline_min"] > 0.9999
    assert all(row["cos_vs_graph_min"] > 0.98 and row["images_per_s"] > 0 for row in rows.values())
