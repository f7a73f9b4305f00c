"""``dcac demo`` wall time on an otherwise idle CPU and next to one busy process, per OpenMP wait policy.

    python benchmarks/demo_contention.py                 # full demo, three conditions
    python benchmarks/demo_contention.py --epochs 2      # shorter

Conditions (each a fresh process running the ``dcac`` CLI's ``demo`` command):

* ``cli`` -- the CLI as shipped: ``OMP_WAIT_POLICY=PASSIVE`` set before torch is imported;
* ``cli + busy`` -- the same while one other process spins on a core (``python -c 'while True: pass'``);
* ``library default + busy`` -- torch imported before the CLI module, so OpenMP starts with libgomp's own
  default wait policy (threads spin before they sleep), as every run did before the CLI set one.

The machine's 1-minute load average is recorded before and after each run: other users' processes count
as contention too. A run is stopped after ``--timeout`` seconds and reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS_DIR, format_table, write_json

_SRC = str(Path(__file__).resolve().parents[1] / "src")
_LIBRARY_DEFAULT = "import torch, sys\nfrom dcac.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def _run_demo(out: Path, epochs: int | None, *, busy: bool, library_default: bool, timeout: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([_SRC, env.get("PYTHONPATH", "")])
    demo_args = ["demo", "--out", str(out)] + ([] if epochs is None else ["--epochs", str(epochs)])
    command = [sys.executable, "-c", _LIBRARY_DEFAULT] if library_default else [sys.executable, "-m", "dcac.cli"]
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        done = subprocess.run(command + demo_args, env=env, capture_output=True, text=True, timeout=timeout)
        seconds, status = time.perf_counter() - start, "ok" if done.returncode == 0 else f"exit {done.returncode}"
    except subprocess.TimeoutExpired:
        seconds, status = time.perf_counter() - start, f"stopped after {timeout:.0f} s"
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    results_file = out / "demo_results.json"
    return {
        "seconds": round(seconds, 1),
        "status": status,
        "load_average_1m_before": round(load_before, 2),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "demo_results": json.loads(results_file.read_text()) if status == "ok" and results_file.is_file() else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None, help="override the demo preset's epochs")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a run is stopped")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "demo_contention_cpu.json")
    args = parser.parse_args(argv)
    conditions = [("cli", False, False), ("cli + busy", True, False), ("library default + busy", True, True)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, busy, library_default in conditions:
            row = {"condition": name, "cpu_count": os.cpu_count()}
            row.update(
                _run_demo(
                    Path(tmp) / name.replace(" ", "_"),
                    args.epochs,
                    busy=busy,
                    library_default=library_default,
                    timeout=args.timeout,
                )
            )
            rows.append(row)
            print(f"{name}: {row['seconds']} s ({row['status']})", flush=True)
    columns = [
        ("condition", "condition"),
        ("seconds", "wall s"),
        ("status", "status"),
        ("load_average_1m_before", "load before"),
        ("load_average_1m_after", "load after"),
    ]
    print(format_table(rows, columns))
    write_json(
        args.out,
        {
            "benchmark": "demo_contention",
            "epochs": args.epochs,
            "command": " ".join(["python benchmarks/demo_contention.py", *(sys.argv[1:] if argv is None else argv)]),
            "rows": rows,
        },
    )
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
