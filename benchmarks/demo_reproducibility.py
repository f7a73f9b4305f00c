"""What ``dcac demo``'s numbers depend on: the same seeds under several numeric conditions, compared bit for bit.

    python benchmarks/demo_reproducibility.py                          # seed 0, the demo's default epochs
    python benchmarks/demo_reproducibility.py --seeds 3 --epochs 3     # seeds 0-2, shorter runs

Each condition is a fresh process running the ``dcac`` CLI's ``demo`` command, as a user runs it, in a fresh
folder, with these environment variables (every one of them removed first, so the caller's settings do not leak):

* ``reference`` -- none set: the CLI's own thread choice, min(cores, 4), and the best kernels the CPU has;
* ``reference, again`` -- the same once more: are same-condition runs bit-identical?
* ``OMP_NUM_THREADS=1`` and ``=2`` -- one thread, and the reference's two set explicitly;
* ``4 threads`` -- what the CLI picks on a 4-core machine, min(cores, 4). torch caps ``OMP_NUM_THREADS`` at the
  number of cores, so a small launcher calls ``torch.set_num_threads(4)`` before the CLI starts (which keeps an
  existing count of at most 4). The thread count, not the number of cores, splits the work, so this gives a 4-core
  machine's numbers (of the same CPU kind) on 2 cores, only slower;
* ``ATEN_CPU_CAPABILITY=avx2`` -- torch's own kernels at the AVX2 level (a CPU without AVX512);
* ``ONEDNN_MAX_CPU_ISA=AVX2`` and ``MKL_ENABLE_INSTRUCTIONS=AVX2`` -- oneDNN's and MKL's kernels capped at AVX2;
* ``AVX2 machine`` -- all three caps together.

Per condition it records every seed's and arm's mAP and R1 (full precision), whether all of the seed's recorded
numbers equal the reference's bit for bit, and the largest change of an arm's mAP and R1 and of the paired
difference DCAC - Baseline against the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS_DIR, format_table, write_json

from dcac.demo.environment import NUMERIC_ENV_VARS

_SRC = str(Path(__file__).resolve().parents[1] / "src")
#: Runs the CLI with torch's thread count set first (argv: threads, then the CLI's arguments); OpenMP's passive
#: wait is set before torch loads, as the CLI itself does.
_WITH_THREADS = (
    "import sys\nfrom dcac.runtime.cpu_threads import use_passive_wait\nuse_passive_wait()\nimport torch\n"
    "torch.set_num_threads(int(sys.argv[1]))\nfrom dcac.cli import main\nsys.exit(main(sys.argv[2:]))\n"
)
_AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
#: name -> environment variables set for it; the first is the reference.
CONDITIONS: dict[str, dict[str, str]] = {
    "reference": {},
    "reference, again": {},
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
    "OMP_NUM_THREADS=2": {"OMP_NUM_THREADS": "2"},
    "4 threads": {},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "ONEDNN_MAX_CPU_ISA=AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "MKL_ENABLE_INSTRUCTIONS=AVX2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "AVX2 machine": _AVX2,
}
#: Conditions that set torch's thread count through the launcher.
_TORCH_THREADS = {"4 threads": 4}
#: The per-seed numbers compared with the reference (``seconds`` is a time, not a result).
_NOT_COMPARED = ("seconds",)


def run_condition(out: Path, name: str, args: argparse.Namespace) -> dict:
    """One ``dcac demo`` process under condition ``name``; its numbers, wall time and the load around it."""
    variables = CONDITIONS[name]
    env = {k: v for k, v in os.environ.items() if k not in NUMERIC_ENV_VARS} | variables
    env["PYTHONPATH"] = os.pathsep.join([_SRC, env.get("PYTHONPATH", "")])
    launcher = ["-c", _WITH_THREADS, str(_TORCH_THREADS[name])] if name in _TORCH_THREADS else ["-m", "dcac.cli"]
    command = [sys.executable, *launcher, "demo", "--out", str(out), "--seed", str(args.seed)]
    command += ["--seeds", str(args.seeds)] + ([] if args.epochs is None else ["--epochs", str(args.epochs)])
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
        status = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
    except subprocess.TimeoutExpired:
        status = f"stopped after {args.timeout:.0f} s"
    results = json.loads((out / "demo_results.json").read_text()) if status == "ok" else None
    return {
        "variables": variables,
        "status": status,
        "seconds": round(time.perf_counter() - start, 1),
        "load_average_1m_before": round(load_before, 2),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "environment": results["environment"] if results else None,
        "per_seed": results["per_seed"] if results else None,
    }


def _numbers(seed_result: dict) -> dict:
    """Every number a seed recorded per row (arms, chance, untrained), without the times."""
    return {
        row: {k: v for k, v in values.items() if k not in _NOT_COMPARED}
        for row, values in seed_result.items()
        if isinstance(values, dict)
    }


def compare(condition: dict, reference: dict, arms: list[str]) -> dict:
    """Bit-for-bit equality with the reference per seed, and the largest changes of the headline numbers."""
    if condition["per_seed"] is None or reference["per_seed"] is None:
        return {"identical": None}
    pairs = list(zip(condition["per_seed"], reference["per_seed"]))
    changes: dict = {"identical": all(_numbers(c) == _numbers(r) for c, r in pairs)}
    changes["identical_per_seed"] = [_numbers(c) == _numbers(r) for c, r in pairs]
    for key in ("mAP", "rank1"):
        changes[f"max_abs_change_{key}"] = {arm: max(abs(c[arm][key] - r[arm][key]) for c, r in pairs) for arm in arms}
        changes[f"max_abs_change_paired_{key}"] = max(
            abs((c["dcac"][key] - c["baseline"][key]) - (r["dcac"][key] - r["baseline"][key])) for c, r in pairs
        )
    return changes


def table_rows(conditions: dict[str, dict], arms: list[str]) -> list[dict]:
    """One row per condition and seed."""
    rows = []
    for name, result in conditions.items():
        environment = result["environment"] or {}
        for index, seed_result in enumerate(result["per_seed"] or [None]):
            row = {
                "condition": name,
                "threads": environment.get("threads"),
                "capability": environment.get("cpu_capability"),
                "status": result["status"],
                "seconds": result["seconds"],
            }
            if seed_result is not None:
                row["seed"] = seed_result["seed"]
                row.update({f"{arm}_{key}": f"{seed_result[arm][key]:.4f}" for arm in arms for key in ("mAP", "rank1")})
                row["identical"] = result["comparison"]["identical_per_seed"][index]
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds (seed .. seed + N - 1)")
    parser.add_argument("--epochs", type=int, default=None, help="override the demo preset's epochs")
    parser.add_argument(
        "--conditions",
        nargs="+",
        choices=list(CONDITIONS),
        default=list(CONDITIONS),
        metavar="NAME",
        help=f"conditions to run (default all; the first is the reference): {', '.join(CONDITIONS)}",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds before one demo run is stopped")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "demo_reproducibility_cpu.json")
    args = parser.parse_args(argv)
    arms = ["baseline", "dcac"]
    command = shlex.join(["python", "benchmarks/demo_reproducibility.py", *(sys.argv[1:] if argv is None else argv)])
    payload = {"benchmark": "demo_reproducibility", "command": command, "seed": args.seed, "seeds": args.seeds}
    conditions: dict[str, dict] = {}
    payload |= {"epochs": args.epochs, "cpu_count": os.cpu_count(), "conditions": conditions}
    for name in args.conditions:
        with tempfile.TemporaryDirectory() as tmp:  # a fresh demo folder each, gone before the next run
            result = run_condition(Path(tmp), name, args)
        conditions[name] = result
        result["comparison"] = compare(result, conditions[args.conditions[0]], arms)
        print(
            f"{name}: {result['seconds']} s, {result['status']}, identical to the reference: "
            f"{result['comparison']['identical']}, largest mAP change {result['comparison'].get('max_abs_change_mAP')}",
            flush=True,
        )
        write_json(args.out, payload)  # after every condition: a run stopped midway keeps what it measured
    columns = [("condition", "condition"), ("threads", "threads"), ("capability", "CPU capability"), ("seed", "seed")]
    columns += [(f"{arm}_{key}", f"{arm} {key}") for arm in arms for key in ("mAP", "rank1")]
    columns += [("identical", "= reference"), ("seconds", "wall s"), ("status", "status")]
    print(format_table(table_rows(conditions, arms), columns))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
