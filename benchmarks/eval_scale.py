"""Evaluation speed and peak memory at Market-1501 and MSMT17 test-set sizes.

Random 512-d features with an identity / camera structure (identity centre + camera offset + noise,
L2-normalised; distractors with pid 0 in the gallery) at Market-1501 size (3,368 × 15,913, 751 ids,
6 cameras) and MSMT17 size (11,659 × 82,161, 3,060 ids, 15 cameras); ``tiny`` (300 × 1,500) runs every
variant in seconds. Variants, each run in its own subprocess so that its peak memory is its own:

* ``reference``     — the standard per-query loop (stable ``np.argsort`` of each row of a dense
                      distance matrix, torchreid's CMC/AP/INP formulas), written here;
* ``dcac_rank``     — :func:`dcac.evaluation.evaluate_rank` on the same dense distance matrix
                      (the ranking stage, distances given);
* ``dcac_features`` — :func:`dcac.evaluation.evaluate_features` end to end from features (chunked;
                      never holds the full distance matrix);
* ``matmul``        — the query × gallery matrix product alone (the floor): as one call, as chunked
                      products into one reused buffer, and as those chunks written in column slices
                      (``distance_matmul``, as ``evaluate_features`` does); the fastest of the three is
                      the floor;
* ``rerank_default`` / ``rerank_dcac`` — ``evaluate_features(..., rerank=preset)`` (sparse
                      k-reciprocal re-ranking, 20/6/0.3 and 50/15/0.3). At MSMT17 size only with
                      ``--rerank-msmt`` (minutes);
* ``matmul_rerank`` — re-ranking's floor: the all × all product (N = queries + gallery, 512-d) its
                      neighbour search needs, in ``rerank_sparse``'s row blocks into one reused buffer,
                      plain and in column slices; the faster is the floor.

With ``--repeat N`` the variants run N times, interleaved; the fastest run of each is kept, and every run's
seconds (``seconds_each_repeat``) and the median of the repeats' ratios to the floor measured next to them
(``..._median_of_repeats``) are recorded too: a slow spell of a shared machine moves that median less than
the ratio of the fastest runs.

Every variant records the 1-minute load average before and after it (``load_average_1m_start`` /
``_end``): on a shared machine the times are only comparable at similar load.

Peak memory: each variant's subprocess reports ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (peak
resident set, MiB) at exit; ``input_mib`` is its resident set right after building the inputs
(features, labels, and for ``reference`` / ``dcac_rank`` the dense distance matrix), so
``peak − input`` is what the evaluation itself added. Times are wall-clock of the evaluation call only.
All variants must agree on CMC / mAP / mINP (to 1e-6). With ``--quick`` (or ``--reference-queries``) the
reference loop runs on a query subset and its time is extrapolated linearly (labelled as such); the
agreement check then compares the dcac metrics on that same subset.

Usage: python benchmarks/eval_scale.py [--sizes market,msmt,tiny] [--quick] [--rerank-msmt] [--threads 2] [--repeat N]
       [--variants reference,dcac_rank,dcac_features,matmul,rerank_default,rerank_dcac,matmul_rerank] [--out PATH]
Writes benchmarks/results/eval_scale.json (eval_scale_quick.json with --quick; --out overrides).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import faster_run, report_result, spawn_worker, worker_environment

from dcac.evaluation import compute_distance, evaluate_features, evaluate_rank
from dcac.evaluation.distance import distance_matmul
from dcac.evaluation.evaluate_features import default_feature_chunk

SIZES = {
    "market": dict(num_query=3368, num_gallery=15913, num_ids=751, num_cams=6, distractor_frac=0.175),
    "msmt": dict(num_query=11659, num_gallery=82161, num_ids=3060, num_cams=15, distractor_frac=0.0),
    # Seconds, not minutes: what the smoke test runs every variant on.
    "tiny": dict(num_query=300, num_gallery=1500, num_ids=60, num_cams=4, distractor_frac=0.1),
}
DIM = 512
MAX_RANK = 50
RERANK_BLOCK_ELEMENTS = 1 << 25  # rerank_sparse's distance-block size
MEMORY_METHOD = (
    "each variant in its own subprocess; peak_mib = ru_maxrss (peak RSS) of that process, "
    "input_mib = its RSS after building inputs (features, labels, dense distances where the variant takes them)"
)


def make_problem(num_query, num_gallery, num_ids, num_cams, distractor_frac, seed=0):
    """Identity centre + camera offset + isotropic noise, L2-normalised; queries cycle over the ids."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(num_ids + 1, DIM, generator=gen), dim=1)
    cam_offsets = torch.nn.functional.normalize(torch.randn(num_cams, DIM, generator=gen), dim=1)
    g_pids = torch.randint(1, num_ids + 1, (num_gallery,), generator=gen)
    g_pids[torch.rand(num_gallery, generator=gen) < distractor_frac] = 0
    g_cams = torch.randint(0, num_cams, (num_gallery,), generator=gen)
    q_pids = torch.arange(num_query) % num_ids + 1
    q_cams = torch.randint(0, num_cams, (num_query,), generator=gen)

    def features(pids, cams):
        out = torch.randn(pids.numel(), DIM, generator=gen).mul_(1.7 / math.sqrt(DIM))
        out += centres[pids]
        out += 0.8 * cam_offsets[cams]
        return torch.nn.functional.normalize(out, dim=1)

    return features(q_pids, q_cams), features(g_pids, g_cams), q_pids, g_pids, q_cams, g_cams


def reference_loop(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """The standard per-query evaluation loop (torchreid's formulas), with a stable argsort."""
    all_cmc, all_ap, all_inp = [], [], []
    for q in range(distmat.shape[0]):
        order = np.argsort(distmat[q], kind="stable")
        remove = (g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q])
        matches = (g_pids[order] == q_pids[q])[~remove].astype(np.int32)
        if not matches.any():
            continue
        cmc = matches.cumsum()
        last = np.where(matches == 1)[0].max()
        all_inp.append(cmc[last] / (last + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        num_rel = matches.sum()
        precision = matches.cumsum() / (np.arange(matches.size) + 1.0) * matches
        all_ap.append(precision.sum() / num_rel)
    return {
        "cmc": np.asarray(all_cmc, dtype=np.float64).mean(axis=0),
        "mAP": float(np.mean(all_ap)),
        "mINP": float(np.mean(all_inp)),
        "num_valid_queries": len(all_ap),
    }


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def summary(metrics) -> dict:
    cmc = np.asarray(metrics["cmc"])
    return {
        "rank1": float(cmc[0]),
        "rank5": float(cmc[4]),
        "rank10": float(cmc[9]),
        "mAP": float(metrics["mAP"]),
        "mINP": float(metrics["mINP"]),
        "num_valid_queries": int(metrics["num_valid_queries"]),
        "cmc": cmc.tolist(),
    }


def plain_product(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return torch.mm(a, b.T, out=out)


def time_row_blocks(a: torch.Tensor, b: torch.Tensor, step: int, product, buffer: torch.Tensor | None = None) -> float:
    """Seconds to compute ``a @ b.T`` by ``product`` in blocks of ``step`` rows of ``a`` into one reused buffer.
    Without ``buffer`` it is allocated inside the timing, so its page faults count (as ``evaluate_features``'s do)."""
    start = time.perf_counter()
    if buffer is None:
        buffer = torch.empty(min(step, a.shape[0]), b.shape[0])
    for s in range(0, a.shape[0], step):
        product(a[s : s + step], b, out=buffer[: min(step, a.shape[0] - s)])
    return time.perf_counter() - start


def rerank_floor(q: torch.Tensor, g: torch.Tensor) -> dict[str, float]:
    """The all × all (N = queries + gallery) product re-ranking's neighbour search needs, in the row blocks
    ``rerank_sparse`` uses, into one reused buffer: the floor of re-ranking. Measured as plain row blocks and
    as those blocks written in column slices (``distance_matmul``, as ``rerank_sparse`` does); ``seconds`` is
    the faster."""
    x = torch.cat([q, g])
    n = x.shape[0]
    step = max(16, RERANK_BLOCK_ELEMENTS // n)
    buffer = torch.empty(step, n)
    row_blocks = time_row_blocks(x, x, step, plain_product, buffer)
    column_sliced = time_row_blocks(x, x, step, distance_matmul, buffer)
    return {
        "seconds": min(row_blocks, column_sliced),
        "row_blocks_seconds": row_blocks,
        "column_sliced_seconds": column_sliced,
    }


def run_worker(variant: str, size: str, reference_queries: int | None) -> dict:
    q, g, qp, gp, qc, gc = make_problem(**SIZES[size])
    result: dict = {"variant": variant, "size": size}
    subset = reference_queries if reference_queries is not None else q.shape[0]
    if variant == "reference":
        start = time.perf_counter()
        distmat = compute_distance(q[:subset], g).numpy()
        result["distance_seconds"] = time.perf_counter() - start
        labels = [t.numpy() for t in (qp[:subset], gp, qc[:subset], gc)]
        result["input_mib"] = rss_mib()
        start = time.perf_counter()
        metrics = reference_loop(distmat, *labels, MAX_RANK)
        result["seconds"] = time.perf_counter() - start
        result["queries_timed"] = subset
        result["subset_metrics"] = summary(metrics)
    elif variant == "dcac_rank":
        distmat = compute_distance(q, g)
        result["input_mib"] = rss_mib()
        start = time.perf_counter()
        metrics = evaluate_rank(distmat, qp, gp, qc, gc, max_rank=MAX_RANK)
        result["seconds"] = time.perf_counter() - start
        result["metrics"] = summary(metrics)
        result["subset_metrics"] = (
            result["metrics"]
            if subset == q.shape[0]
            else summary(evaluate_rank(distmat[:subset], qp[:subset], gp, qc[:subset], gc, max_rank=MAX_RANK))
        )
    elif variant == "dcac_features":
        result["input_mib"] = rss_mib()
        start = time.perf_counter()
        metrics = evaluate_features(q, g, qp, gp, qc, gc, max_rank=MAX_RANK)
        result["seconds"] = time.perf_counter() - start
        result["metrics"] = summary(metrics)
        result["subset_metrics"] = (
            result["metrics"]
            if subset == q.shape[0]
            else summary(evaluate_features(q[:subset], g, qp[:subset], gp, qc[:subset], gc, max_rank=MAX_RANK))
        )
    elif variant == "matmul":
        result["input_mib"] = rss_mib()
        step = default_feature_chunk(q.shape[0], g.shape[0], q.shape[1])
        result["chunked_seconds"] = time_row_blocks(q, g, step, plain_product)
        result["column_sliced_seconds"] = time_row_blocks(q, g, step, distance_matmul)
        start = time.perf_counter()
        full = q @ g.T
        result["single_call_seconds"] = time.perf_counter() - start
        del full
        result["seconds"] = min(
            result["chunked_seconds"], result["single_call_seconds"], result["column_sliced_seconds"]
        )
    elif variant == "matmul_rerank":
        result["input_mib"] = rss_mib()
        result.update(rerank_floor(q, g))
    elif variant.startswith("rerank_"):
        preset = variant.removeprefix("rerank_")
        result["input_mib"] = rss_mib()
        start = time.perf_counter()
        metrics = evaluate_features(q, g, qp, gp, qc, gc, max_rank=MAX_RANK, rerank=preset)
        result["seconds"] = time.perf_counter() - start
        result["metrics"] = summary(metrics)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    result["peak_mib"] = peak_mib()
    result["load_average_1m_end"] = os.getloadavg()[0]
    return result


def spawn(variant: str, size: str, threads: int, reference_queries: int | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", variant, "--size", size, "--threads", str(threads)]
    if reference_queries is not None:
        cmd += ["--reference-queries", str(reference_queries)]
    print(f"  running {variant} at {size} size ...", flush=True)
    return {"variant": variant, "size": size, **spawn_worker(cmd)}


def metrics_agree(a: dict, b: dict, tol: float = 1e-6) -> bool:
    return (
        a["num_valid_queries"] == b["num_valid_queries"]
        and np.allclose(a["cmc"], b["cmc"], rtol=0, atol=tol)
        and abs(a["mAP"] - b["mAP"]) <= tol
        and abs(a["mINP"] - b["mINP"]) <= tol
    )


def run_size(size: str, args) -> dict:
    spec = SIZES[size]
    reference_queries = args.reference_queries or (min(500, spec["num_query"]) if args.quick else None)
    variants = ["reference", "dcac_rank", "dcac_features", "matmul"]
    if size != "msmt" or args.rerank_msmt:
        variants += ["rerank_default", "rerank_dcac", "matmul_rerank"]
    if args.variants:
        variants = [v for v in variants if v in args.variants.split(",")]
    runs: dict[str, dict] = {}
    each: dict[str, list[float | None]] = {v: [] for v in variants}
    # Interleaved repeats, fastest kept: on a shared machine the floor and each variant see similar load.
    for _ in range(args.repeat):
        for v in variants:
            run = spawn(v, size, args.threads, reference_queries if v == "reference" or v.startswith("dcac") else None)
            each[v].append(run.get("seconds"))
            runs[v] = {**faster_run(runs.get(v), run), "repeats": args.repeat}
    for v, seconds in each.items():
        runs[v]["seconds_each_repeat"] = seconds
    out = {"size": size, **spec, "dim": DIM, "variants": runs}
    ok = {v: "error" not in r for v, r in runs.items()}
    ref = runs.get("reference", {"error": "not run"})
    if ok.get("reference"):
        ref["extrapolated"] = ref["queries_timed"] < spec["num_query"]
        ref["seconds_full"] = ref["seconds"] * spec["num_query"] / ref["queries_timed"]
    if ok.get("reference") and ok.get("dcac_rank") and ok.get("dcac_features"):
        out["metrics_agree"] = bool(
            metrics_agree(ref["subset_metrics"], runs["dcac_rank"]["subset_metrics"])
            and metrics_agree(ref["subset_metrics"], runs["dcac_features"]["subset_metrics"])
            and metrics_agree(runs["dcac_rank"]["metrics"], runs["dcac_features"]["metrics"])
        )
        out["ranking_speedup_vs_reference"] = ref["seconds_full"] / runs["dcac_rank"]["seconds"]
    if ok.get("dcac_features") and ok.get("matmul"):
        out["features_over_matmul"] = runs["dcac_features"]["seconds"] / runs["matmul"]["seconds"]
        out["features_over_matmul_median_of_repeats"] = median_ratio(each["dcac_features"], each["matmul"])
    for preset in ("default", "dcac"):
        if ok.get(f"rerank_{preset}") and ok.get("matmul_rerank"):
            out[f"rerank_{preset}_over_floor"] = runs[f"rerank_{preset}"]["seconds"] / runs["matmul_rerank"]["seconds"]
            out[f"rerank_{preset}_over_floor_median_of_repeats"] = median_ratio(
                each[f"rerank_{preset}"], each["matmul_rerank"]
            )
    return out


def median_ratio(seconds: list[float | None], floor_seconds: list[float | None]) -> float | None:
    """Median over repeats of each repeat's ratio to the floor measured next to it: less moved than the ratio of
    the fastest runs by a slow spell of the machine that falls on one variant's runs."""
    ratios = [a / b for a, b in zip(seconds, floor_seconds) if a is not None and b]
    return statistics.median(ratios) if ratios else None


def print_table(results: list[dict]) -> None:
    print(f"\n{'size':7s} {'variant':15s} {'seconds':>10s} {'peak MiB':>10s} {'input MiB':>10s}  note")
    for res in results:
        for name, run in res["variants"].items():
            if "error" in run:
                print(f"{res['size']:7s} {name:15s} {'failed':>10s}  {run['error'][-200:]}")
                continue
            seconds = run.get("seconds_full", run["seconds"])
            note = ""
            if run.get("extrapolated"):
                note = f"extrapolated from {run['queries_timed']} queries ({run['seconds']:.1f} s)"
            if name == "matmul":
                note = (
                    f"single call {run['single_call_seconds']:.2f} s, chunked {run['chunked_seconds']:.2f} s, "
                    f"column-sliced {run['column_sliced_seconds']:.2f} s"
                )
            if "metrics" in run:
                m = run["metrics"]
                note = (note + f" R1 {m['rank1']:.4f} mAP {m['mAP']:.4f} mINP {m['mINP']:.4f}").strip()
            print(
                f"{res['size']:7s} {name:15s} {seconds:10.2f} {run['peak_mib']:10.0f} {run['input_mib']:10.0f}  {note}"
            )
        for preset in ("default", "dcac"):
            if f"rerank_{preset}_over_floor" in res:
                print(
                    f"{res['size']:7s} rerank_{preset} / N x N matmul floor: {res[f'rerank_{preset}_over_floor']:.2f}x"
                    f" (median of the repeats' ratios {res[f'rerank_{preset}_over_floor_median_of_repeats']:.2f}x)"
                )
        if "metrics_agree" not in res and "features_over_matmul" not in res:
            continue
        print(
            f"{res['size']:7s} metrics agree: {res.get('metrics_agree')}; ranking speed-up vs reference: "
            f"{res.get('ranking_speedup_vs_reference', float('nan')):.1f}x; features / matmul floor: "
            f"{res.get('features_over_matmul', float('nan')):.2f}x"
            f" (median of the repeats' ratios {res.get('features_over_matmul_median_of_repeats') or float('nan'):.2f}x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="market,msmt", help="comma-separated subset of: market, msmt, tiny")
    parser.add_argument("--quick", action="store_true", help="reference loop on a 500-query subset (extrapolated)")
    parser.add_argument("--reference-queries", type=int, default=None, help="reference loop on this many queries")
    parser.add_argument("--rerank-msmt", action="store_true", help="also time re-ranking at MSMT17 size (minutes)")
    parser.add_argument("--variants", default=None, help="comma-separated subset of the variants to run")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run the variants this many times, interleaved; keep the fastest"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        report_result(run_worker(args.worker, args.size, args.reference_queries))
        return

    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = set(sizes) - set(SIZES)
    if unknown:
        parser.error(f"--sizes: unknown {sorted(unknown)}; expected a subset of {sorted(SIZES)}")
    results = []
    for size in sizes:
        print(f"{size}: {SIZES[size]}", flush=True)
        results.append(run_size(size, args))
    print_table(results)
    out = args.out or Path(__file__).parent / "results" / ("eval_scale_quick.json" if args.quick else "eval_scale.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "eval_scale",
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "machine": {
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "platform": platform.platform(),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "memory_method": MEMORY_METHOD,
        "omp_wait_policy": worker_environment()["OMP_WAIT_POLICY"],
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_1m_end": os.getloadavg()[0],
        "results": results,
    }
    out.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
