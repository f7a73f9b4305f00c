"""What the benchmark smoke tests share: running one benchmark script end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def run_benchmark() -> Callable[..., dict]:
    """``run_benchmark(script, *args, out=PATH, printed=(...))`` runs ``benchmarks/<script>`` in a subprocess,
    checks that it exits 0 and prints each of ``printed`` (its table), and returns the JSON it wrote to ``out``."""

    def run(script: str, *args: str, out: Path, printed: tuple[str, ...] = (), timeout: int = 600) -> dict:
        proc = subprocess.run(
            [sys.executable, str(BENCHMARKS / script), *args, "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        for text in printed:
            assert text in proc.stdout
        return json.loads(out.read_text())

    return run
