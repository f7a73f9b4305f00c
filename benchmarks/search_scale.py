"""``dcac search --rerank`` at 100,000 gallery images: time and peak memory against its own matrix-product floor.

    python benchmarks/search_scale.py                   # 100,000 × 512-d gallery, 100 queries, 20/6/0.3
    python benchmarks/search_scale.py --tiny            # 3,000 gallery images, seconds (smoke test)

``dcac search`` extracts (or loads) the features and then calls :func:`dcac.inference.ranking.rank`, which with
``--rerank`` runs :func:`dcac.evaluation.rerank_sparse` on all queries and the whole gallery together; this
benchmark times that call on synthetic features shaped like Re-ID features (``ann_index.py``'s: ``gallery / 8``
identities, each image its identity's unit centre plus noise, L2-normalised). Variants, each in its own
subprocess so that its peak resident set is its own:

* ``rerank`` — ``rank(query, gallery, topk=10, rerank=(k1, k2, lambda))``, what ``dcac search --rerank`` runs;
* ``floor``  — the all × all product (N = queries + gallery, 512-d) re-ranking's neighbour search needs, in
  ``rerank_sparse``'s row blocks into one reused buffer, plain and in column slices, the faster kept
  (``eval_scale.py``'s ``matmul_rerank``);
* ``plain``  — ``rank(query, gallery, topk=10)`` without re-ranking, for scale.

Re-ranking needs every gallery image's k-reciprocal neighbours, so its floor is the N × N product whatever the
number of queries. ``--repeat`` runs the variants that many times, interleaved, and keeps each one's fastest;
each records the 1-minute load average before and after it (on a shared machine only ratios measured in the same
run mean much).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from ann_index import synthetic_features
from common import (
    RESULTS_DIR,
    environment,
    faster_run,
    format_table,
    report_result,
    spawn_worker,
    worker_environment,
    write_json,
)
from eval_scale import peak_mib, rerank_floor, rss_mib

from dcac.inference.ranking import rank

VARIANTS = ("rerank", "floor", "plain")
TOPK = 10


def run_worker(variant: str, args: argparse.Namespace) -> dict:
    gallery, query = synthetic_features(args.gallery, args.queries, args.dim, args.noise)
    result: dict = {"variant": variant, "input_mib": rss_mib()}
    start = time.perf_counter()
    if variant == "floor":
        result.update(rerank_floor(query, gallery))
    else:
        indices, _ = rank(query, gallery, topk=TOPK, rerank=tuple(args.params) if variant == "rerank" else None)
        result["seconds"] = time.perf_counter() - start
        result["top1"] = indices[:, 0].tolist()
    result["peak_mib"] = peak_mib()
    result["load_average_1m_end"] = os.getloadavg()[0]
    return result


def spawn(variant: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", variant, "--gallery", str(args.gallery), "--queries"]
    cmd += [str(args.queries), "--dim", str(args.dim), "--noise", str(args.noise), "--threads", str(args.threads)]
    cmd += ["--params", *map(str, args.params)]
    print(f"  running {variant} ...", flush=True)
    return {"variant": variant, **spawn_worker(cmd)}


def measure(args: argparse.Namespace) -> dict[str, dict]:
    runs: dict[str, dict] = {}
    for _ in range(args.repeat):  # interleaved, fastest kept: the floor and the search see similar load
        for variant in VARIANTS:
            runs[variant] = {**faster_run(runs.get(variant), spawn(variant, args)), "repeats": args.repeat}
    floor = runs["floor"].get("seconds")
    for run in runs.values():
        if "error" not in run and floor:
            run["over_floor"] = run["seconds"] / floor
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="3,000 gallery images (smoke test)")
    parser.add_argument("--gallery", type=int, default=None, help="gallery size (default 100000, tiny 3000)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--noise", type=float, default=1.0, help="within-identity noise (relative to the unit centre)")
    parser.add_argument("--params", type=float, nargs=3, default=[20, 6, 0.3], metavar=("K1", "K2", "LAMBDA"))
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.gallery = args.gallery or (3000 if args.tiny else 100_000)
    args.params = [int(args.params[0]), int(args.params[1]), args.params[2]]
    torch.set_num_threads(args.threads)
    if args.worker:
        report_result(run_worker(args.worker, args))
        return
    runs = measure(args)
    rows = [{"variant": name, **run} for name, run in runs.items()]
    print(
        format_table(
            rows,
            [
                ("variant", "variant"),
                ("seconds", "seconds"),
                ("over_floor", "× floor"),
                ("peak_mib", "peak MiB"),
                ("input_mib", "input MiB"),
                ("load_average_1m_start", "load start"),
                ("load_average_1m_end", "load end"),
                ("error", "error"),
            ],
        )
    )
    result = {
        "benchmark": "search_scale",
        "size": "tiny" if args.tiny else f"{args.gallery // 1000}k",
        "sizes": {"gallery": args.gallery, "queries": args.queries, "dim": args.dim, "noise": args.noise},
        "rerank": {"k1": args.params[0], "k2": args.params[1], "lambda_value": args.params[2]},
        "topk": TOPK,
        "environment": {**environment(torch.device("cpu")), "torch_threads": args.threads},
        "variants": runs,
        "command": "python benchmarks/search_scale.py " + " ".join(sys.argv[1:]),
        "omp_wait_policy": worker_environment()["OMP_WAIT_POLICY"],
    }
    out = args.out or RESULTS_DIR / f"search_scale_{result['size']}_{args.threads}threads_cpu.json"
    print(f"-> {write_json(out, result)}")


if __name__ == "__main__":
    main()
