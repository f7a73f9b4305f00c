"""Exact verification metrics (``dcac eval --roc``) at Market-1501 and MSMT17 test-set sizes.

The problem is ``eval_scale.py``'s: random 512-d L2-normalised features with identity / camera structure
at Market-1501 size (3,368 x 15,913) and MSMT17 size (11,659 x 82,161: 958M query x gallery pairs).
Variants, each in its own subprocess so that its peak memory is its own:

* ``roc``               -- :func:`dcac.evaluation.roc.verification_metrics` (TPR at FPR 1e-4/1e-3/1e-2,
                           EER, histograms), exact, two passes over query slices;
* ``evaluate_features`` -- the ranking evaluation (CMC/mAP/mINP) on the same features: the
                           evaluation's memory bound the verification must stay within;
* ``pair_list``         -- what a full pair list costs: the impostor distances of the first
                           ``--check-queries`` queries gathered and sorted, extrapolated linearly in the
                           number of queries (time and memory; labelled as extrapolated).

Exactness: on the first ``--check-queries`` queries the ``roc`` results are compared with a brute-force
computation over the full sorted pair list (same thresholds, TPRs, FPRs and EER, bit for bit).
Peak memory: ``ru_maxrss`` of the variant's process (for ``roc`` taken before the exactness check);
``input_mib`` its RSS after building the features.

Usage: python benchmarks/verification_scale.py [--sizes market,msmt] [--threads 2] [--check-queries 400]
       [--out PATH]     (default benchmarks/results/verification_scale_<device>.json)
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULT_TAG, environment, format_table, write_json
from eval_scale import SIZES, make_problem, peak_mib, rss_mib

from dcac.evaluation import evaluate_features
from dcac.evaluation.distance import distance_operands
from dcac.evaluation.roc import SLICE_ELEMENTS, verification_metrics

FPRS = (1e-4, 1e-3, 1e-2)


def brute_force(q, g, qp, gp, qc, gc) -> dict:
    """TPR/FPR/threshold at each FPR and the EER from the full sorted pair list (the same float distances)."""
    a, b = distance_operands(q, g, "euclidean")
    rows = max(1, SLICE_ELEMENTS // g.shape[0])
    dist = torch.cat([a[s : s + rows] @ b.T for s in range(0, len(a), rows)]).numpy()
    same = qp.numpy()[:, None] == gp.numpy()[None, :]
    genuine = np.sort(dist[same & (qc.numpy()[:, None] != gc.numpy()[None, :])])
    impostor = np.sort(dist[~same])
    points = {}
    for f in FPRS:
        t = float(impostor[math.floor(f * len(impostor))])
        points[f"{f:g}"] = (t, float(np.mean(genuine < t)), float(np.mean(impostor < t)))
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    thresholds = np.concatenate([thresholds, np.nextafter(thresholds, np.float32(np.inf)), [np.inf]])
    fpr = np.searchsorted(impostor, thresholds, side="left") / len(impostor)
    fnr = 1 - np.searchsorted(genuine, thresholds, side="left") / len(genuine)
    return {"points": points, "eer": float(np.min(np.maximum(fpr, fnr)))}


def run_worker(variant: str, size: str, check_queries: int) -> dict:
    q, g, qp, gp, qc, gc = make_problem(**SIZES[size])
    input_mib = rss_mib()
    start = time.perf_counter()
    row: dict = {"variant": variant, "size": size, "input_mib": input_mib}
    if variant == "roc":
        result = verification_metrics(q, g, qp.tolist(), gp.tolist(), qc.tolist(), gc.tolist(), fprs=FPRS)
        row["seconds"] = time.perf_counter() - start
        row["peak_mib"] = peak_mib()  # before the exactness check below, whose pair list is not the variant's
        row.update(
            {
                "passes": result["passes"],
                "eer": result["eer"],
                "num_genuine_pairs": result["num_genuine_pairs"],
                "num_impostor_pairs": result["num_impostor_pairs"],
                "tpr_at_fpr": {k: v["tpr"] for k, v in result["tpr_at_fpr"].items()},
            }
        )
        n = check_queries
        sub = verification_metrics(q[:n], g, qp[:n].tolist(), gp.tolist(), qc[:n].tolist(), gc.tolist(), fprs=FPRS)
        reference = brute_force(q[:n], g, qp[:n], gp, qc[:n], gc)
        row["exact_on_subset"] = sub["eer"] == reference["eer"] and all(
            (p["threshold"], p["tpr"], p["fpr"]) == reference["points"][k] for k, p in sub["tpr_at_fpr"].items()
        )
    elif variant == "evaluate_features":
        evaluate_features(q, g, qp, gp, qc, gc)
        row["seconds"] = time.perf_counter() - start
    else:
        a, b = distance_operands(q[:check_queries], g, "euclidean")
        same = qp[:check_queries, None] == gp[None, :]
        torch.sort((a @ b.T)[~same])
        scale = len(q) / check_queries
        row["seconds"] = (time.perf_counter() - start) * scale
        row["extrapolated_from_queries"] = check_queries
        row["pair_list_mib"] = 4 * int((~same).sum()) * scale / 2**20 * 2  # values + sorted copy
    row.setdefault("peak_mib", peak_mib())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="market,msmt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--check-queries", type=int, default=400)
    parser.add_argument("--variants", default="roc,evaluate_features,pair_list")
    parser.add_argument("--out")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        variant, size = args.worker.split(":")
        print(RESULT_TAG + json.dumps(run_worker(variant, size, args.check_queries)))
        return
    rows = []
    for size in args.sizes.split(","):
        for variant in args.variants.split(","):
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    f"{variant}:{size}",
                    "--threads",
                    str(args.threads),
                    "--check-queries",
                    str(args.check_queries),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            lines = [l for l in done.stdout.splitlines() if l.startswith(RESULT_TAG)]
            rows.append(
                json.loads(lines[-1][len(RESULT_TAG) :])
                if lines
                else {"variant": variant, "size": size, "error": done.stderr.strip().splitlines()[-1:]}
            )
            print(
                format_table(
                    rows[-1:],
                    [
                        ("size", "size"),
                        ("variant", "variant"),
                        ("seconds", "s"),
                        ("peak_mib", "peak MiB"),
                        ("input_mib", "input MiB"),
                    ],
                ),
                flush=True,
            )
    print(
        format_table(
            rows,
            [
                ("size", "size"),
                ("variant", "variant"),
                ("seconds", "s"),
                ("peak_mib", "peak MiB"),
                ("input_mib", "input MiB"),
                ("passes", "passes"),
                ("eer", "EER"),
                ("exact_on_subset", "exact (subset)"),
                ("pair_list_mib", "pair list MiB"),
            ],
        )
    )
    out = Path(args.out or Path(__file__).parent / "results" / "verification_scale_cpu.json")
    print(f"wrote {write_json(out, {'environment': environment(torch.device('cpu')), 'rows': rows})}")


if __name__ == "__main__":
    main()
