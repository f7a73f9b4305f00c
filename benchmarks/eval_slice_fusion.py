"""Would ranking each column slice of the distance product in cache bring evaluation within 1.2x of the product?

``evaluate_features`` writes each block of query rows' distances to memory in 512-column slices and then ranks the
block (``match_ranks``: compare with each row's worst match, compact the candidates, count them). A fused design
would rank each slice right after its product, while it is in cache, and never write the matrix at all. This
benchmark measures that design's unavoidable part, in one worker process (interleaved, the fastest of ``--repeat``
kept), on eval_scale's problem (``--size market`` by default):

* ``product_into_memory`` — the product of ``evaluate_features``'s augmented operands, in its row blocks and column
  slices, into a block buffer allocated inside the timing (as eval_scale's ``matmul`` floor);
* ``product_into_cache`` — the same products, every slice into one reused cache-sized buffer (nothing kept): the
  product's cost when no matrix is written, the floor a fused design would be measured against;
* ``extraction_in_cache`` — ``product_into_cache`` plus, after each slice, the compare, compaction and gather of its
  candidates on ``--threads`` threads (a pool made outside the timing), with every row's worst-match distance given
  in advance (computed outside the timing): the fused design with no counting at all;
* ``extraction_in_memory`` / ``ranking_in_memory`` — the present design's compare + compaction + gather, and its
  whole ``match_ranks``, over the materialised blocks (each block's product outside the timing);
* ``evaluate_features`` — end to end.

The counting a fused design would still add is at least ``ranking_in_memory - extraction_in_memory`` (what the
present design spends after its candidates are found), so ``fused_lower_bound = extraction_in_cache + that``. Left
out of the bound and favouring the fused design: finding each row's worst match before its slices (they must
equal the product's bit for bit, or be bounded and re-checked), and the pool's creation.

Usage: python benchmarks/eval_slice_fusion.py [--size market] [--threads 2] [--repeat 5] [--out PATH]
Writes benchmarks/results/eval_slice_fusion.json (--out overrides).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from common import format_table, report_result, spawn_worker, worker_environment, write_json
from eval_scale import SIZES, make_problem, time_row_blocks

from dcac.evaluation import evaluate_features
from dcac.evaluation.distance import _CPU_GEMM_COLUMNS, distance_matmul, distance_operands
from dcac.evaluation.evaluate_features import default_feature_chunk
from dcac.evaluation.match_ranks import GalleryIndex, _candidate_positions, _task_bounds, match_ranks

MEASUREMENTS = (
    "product_into_memory",
    "product_into_cache",
    "extraction_in_cache",
    "extraction_in_memory",
    "ranking_in_memory",
    "evaluate_features",
)


def worst_match_distances(block: torch.Tensor, q_pids, q_camids, gallery: GalleryIndex) -> np.ndarray:
    """Each row's largest distance to a true match (same identity, other camera); -inf for a row without one."""
    same_idx, present = gallery.same_identity(q_pids)
    is_match = present & (gallery.camids[same_idx] != q_camids[:, None])
    dist = torch.where(is_match, block.gather(1, same_idx), torch.tensor(float("-inf")))
    return dist.max(dim=1).values.numpy()


def candidates(dist: np.ndarray, worst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions and values of the entries no farther than their row's worst match (as ``match_ranks``)."""
    flat = _candidate_positions(dist, worst)
    return flat, dist.reshape(-1).take(flat)


class Problem:
    def __init__(self, size: str, threads: int) -> None:
        q, g, self.qp, self.gp, self.qc, self.gc = make_problem(**SIZES[size])
        self.q, self.g = q, g
        self.a, self.b = distance_operands(q, g, "euclidean")
        self.step = default_feature_chunk(q.shape[0], g.shape[0], q.shape[1])
        self.starts = range(0, q.shape[0], self.step)
        self.gallery = GalleryIndex.build(self.gp, self.gc)
        self.threads = threads
        self.pool = ThreadPoolExecutor(max_workers=threads)
        self.worst = np.concatenate([self.worst_of_block(start) for start in self.starts])

    def rows(self, start: int) -> slice:
        return slice(start, min(start + self.step, self.q.shape[0]))

    def block(self, start: int) -> torch.Tensor:
        rows = self.rows(start)
        out = torch.empty(rows.stop - rows.start, self.b.shape[0])
        return distance_matmul(self.a[rows], self.b, out=out)

    def worst_of_block(self, start: int) -> np.ndarray:
        rows = self.rows(start)
        return worst_match_distances(self.block(start), self.qp[rows], self.qc[rows], self.gallery)

    def product_into_memory(self) -> tuple[float, None]:
        return time_row_blocks(self.a, self.b, self.step, distance_matmul), None

    def _slices(self, extract: bool) -> tuple[float, int | None]:
        found = [] if extract else None
        begin = time.perf_counter()
        buffer = torch.empty(min(self.step, self.q.shape[0]) * _CPU_GEMM_COLUMNS)
        for start in self.starts:
            rows = self.rows(start)
            a = self.a[rows]
            parts = np.linspace(0, a.shape[0], self.threads + 1).astype(int)
            for first in range(0, self.b.shape[0], _CPU_GEMM_COLUMNS):
                b = self.b[first : first + _CPU_GEMM_COLUMNS]
                tile = buffer[: a.shape[0] * b.shape[0]].view(a.shape[0], b.shape[0])
                torch.mm(a, b.T, out=tile)
                if extract:
                    tile_np, worst = tile.numpy(), self.worst[rows]
                    jobs = [(tile_np[lo:hi], worst[lo:hi]) for lo, hi in zip(parts[:-1], parts[1:])]
                    found += self.pool.map(lambda job: candidates(*job), jobs)
        seconds = time.perf_counter() - begin
        return seconds, None if found is None else sum(values.size for _, values in found)

    def product_into_cache(self) -> tuple[float, None]:
        return self._slices(extract=False)

    def extraction_in_cache(self) -> tuple[float, int]:
        return self._slices(extract=True)

    def extraction_in_memory(self) -> tuple[float, int]:
        seconds, count = 0.0, 0
        for start in self.starts:
            dist, worst = self.block(start).numpy(), self.worst[self.rows(start)]
            bounds = _task_bounds(dist.shape[0], dist.shape[1], self.threads)
            jobs = [(dist[lo:hi], worst[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]
            begin = time.perf_counter()
            found = list(self.pool.map(lambda job: candidates(*job), jobs))
            seconds += time.perf_counter() - begin
            count += sum(values.size for _, values in found)
        return seconds, count

    def ranking_in_memory(self) -> tuple[float, None]:
        seconds = 0.0
        for start in self.starts:
            rows = self.rows(start)
            block = self.block(start)
            begin = time.perf_counter()
            match_ranks(block, self.qp[rows], self.qc[rows], self.gallery)
            seconds += time.perf_counter() - begin
        return seconds, None

    def evaluate_features(self) -> tuple[float, None]:
        begin = time.perf_counter()
        evaluate_features(self.q, self.g, self.qp, self.gp, self.qc, self.gc)
        return time.perf_counter() - begin, None


def run_worker(size: str, threads: int, repeat: int) -> dict:
    problem = Problem(size, threads)
    seconds: dict[str, list[float]] = {name: [] for name in MEASUREMENTS}
    counts: dict[str, int | None] = {}
    for _ in range(repeat):
        for name in MEASUREMENTS:
            took, count = getattr(problem, name)()
            seconds[name].append(took)
            counts.setdefault(name, count)
    best = {name: min(values) for name, values in seconds.items()}
    counting = best["ranking_in_memory"] - best["extraction_in_memory"]
    bound = best["extraction_in_cache"] + counting
    distances = problem.q.shape[0] * problem.g.shape[0]
    return {
        "size": size,
        "shape": [problem.q.shape[0], problem.g.shape[0]],
        "rows_per_block": problem.step,
        "columns_per_slice": _CPU_GEMM_COLUMNS,
        "seconds": best,
        "seconds_each_repeat": seconds,
        "candidate_density": counts["extraction_in_cache"] / distances,
        "candidates_equal": counts["extraction_in_cache"] == counts["extraction_in_memory"],
        "counting_seconds": counting,
        "fused_lower_bound_seconds": bound,
        "features_over_product_into_memory": best["evaluate_features"] / best["product_into_memory"],
        "fused_lower_bound_over_product_into_cache": bound / best["product_into_cache"],
        "fused_lower_bound_over_product_into_memory": bound / best["product_into_memory"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="market", choices=sorted(SIZES))
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads and pool threads")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved repeats; the fastest of each is kept")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "eval_slice_fusion.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        report_result(run_worker(args.size, args.threads, args.repeat))
        return

    cmd = [sys.executable, __file__, "--worker", "--size", args.size, "--threads", str(args.threads)]
    result = spawn_worker(cmd + ["--repeat", str(args.repeat)])
    if "error" in result:
        sys.exit(f"eval_slice_fusion: the worker failed: {result['error']}")
    into_memory, into_cache = result["seconds"]["product_into_memory"], result["seconds"]["product_into_cache"]
    rows = [
        {"name": name, "seconds": took, "memory": took / into_memory, "cache": took / into_cache}
        for name, took in [*result["seconds"].items(), ("fused_lower_bound", result["fused_lower_bound_seconds"])]
    ]
    print(
        format_table(
            rows,
            [
                ("name", "measurement"),
                ("seconds", "seconds"),
                ("memory", "/ product into memory"),
                ("cache", "/ product into cache"),
            ],
        )
    )
    print(
        f"\n{result['size']} {result['shape']}: candidates {result['candidate_density']:.1%} of the distances "
        f"(equal in both designs: {result['candidates_equal']}); fused lower bound "
        f"{result['fused_lower_bound_over_product_into_cache']:.2f}x its own floor (product into cache), "
        f"evaluate_features {result['features_over_product_into_memory']:.2f}x its floor (product into memory)"
    )
    payload = {
        "benchmark": "eval_slice_fusion",
        "command": " ".join(["python", *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "numpy": np.__version__},
        "torch": torch.__version__,
        "omp_wait_policy": worker_environment()["OMP_WAIT_POLICY"],
        "load_average_1m_start": result.pop("load_average_1m_start"),
        "load_average_1m_end": os.getloadavg()[0],
        "result": result,
    }
    print(f"\nwrote {write_json(args.out, payload)}")


if __name__ == "__main__":
    main()
