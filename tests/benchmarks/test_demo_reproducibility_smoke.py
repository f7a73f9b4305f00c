"""benchmarks/demo_reproducibility.py runs ``dcac demo`` under a condition, records its numbers and environment,
and tells bit-identical numbers from changed ones."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from demo_reproducibility import compare

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(BENCHMARKS.parent / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "demo_reproducibility.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_one_condition_runs_the_demo_and_records_its_numbers(tmp_path):
    out = tmp_path / "result.json"
    done = _run("--epochs", "1", "--conditions", "OMP_NUM_THREADS=1", "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| condition | threads | CPU capability | seed |" in done.stdout
    result = json.loads(out.read_text())
    assert (
        result["command"]
        == f"python benchmarks/demo_reproducibility.py --epochs 1 --conditions OMP_NUM_THREADS=1 --out {out}"
    )
    (condition,) = result["conditions"].values()
    assert condition["status"] == "ok" and condition["comparison"]["identical"] is True
    # The condition's variable reached the demo: its own record says so.
    assert condition["environment"]["threads"] == 1
    assert condition["environment"]["numeric_env"] == {"OMP_NUM_THREADS": "1"}
    (seed,) = condition["per_seed"]
    assert seed["seed"] == 0 and 0 <= seed["dcac"]["mAP"] <= 100

    # The comparison with a reference: equal numbers are identical, one changed number anywhere is not.
    changed = copy.deepcopy(condition)
    changed["per_seed"][0]["baseline"]["mAP"] += 0.5
    changed["per_seed"][0]["dcac"]["p_true"] += 1e-9
    verdict = compare(changed, condition, ["baseline", "dcac"])
    assert verdict["identical"] is False and verdict["identical_per_seed"] == [False]
    assert verdict["max_abs_change_mAP"] == {"baseline": pytest.approx(0.5), "dcac": 0.0}
    assert verdict["max_abs_change_paired_mAP"] == pytest.approx(0.5)
    changed["per_seed"][0]["baseline"]["mAP"] = condition["per_seed"][0]["baseline"]["mAP"]
    changed["per_seed"][0]["baseline"]["seconds"] += 10.0  # a time is not a result
    assert compare(changed, condition, ["baseline", "dcac"])["max_abs_change_mAP"]["baseline"] == 0.0
    assert compare(changed, condition, ["baseline", "dcac"])["identical"] is False  # p_true still differs


def test_an_unknown_condition_is_refused_with_the_known_ones():
    done = _run("--conditions", "fast")
    assert done.returncode == 2 and "invalid choice: 'fast'" in done.stderr and "4 threads" in done.stderr
