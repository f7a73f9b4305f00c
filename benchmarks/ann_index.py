"""Gallery index at 100,000 gallery images: recall@10 against exact search, build and query time, file size.

    python benchmarks/ann_index.py                      # 100,000 × 512-d gallery, 1,000 queries, CPU
    python benchmarks/ann_index.py --tiny               # 5,000 gallery images, seconds (smoke test)

Features are synthetic but shaped like Re-ID features: ``--gallery / 8`` identities, each a random unit
centre, every image its identity's centre plus Gaussian noise, L2-normalised (512-d: CLIP ViT-B/16's
projection, the size of dcac's f_bn).  Queries are further images of gallery identities.  Random
unstructured vectors would be the worst case for an approximate index; real galleries have this
clustered structure.  ``exact`` rows use ``faiss.IndexFlatL2`` and ``dcac.rank`` (torch), the reference
for recall.  faiss and torch run on ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from common import RESULTS_DIR, environment, format_table, write_json

from dcac.inference.ann_index import GalleryIndex
from dcac.inference.ranking import rank

# (kind, build parameters, search-time settings tried on the one built index)
CONFIGS = (
    ("exact", {}, [{}]),
    ("hnsw", {"hnsw_m": 32}, [{"ef_search": 64}, {"ef_search": 128}, {"ef_search": 256}]),
    ("ivf", {}, [{"nprobe": 8}, {"nprobe": 32}, {"nprobe": 128}]),
)


def synthetic_features(
    gallery: int, queries: int, dim: int, noise: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(max(1, gallery // 8), dim, generator=generator), dim=1)

    def draw(n: int) -> torch.Tensor:
        ids = torch.randint(0, centres.shape[0], (n,), generator=generator)
        return F.normalize(centres[ids] + noise * torch.randn(n, dim, generator=generator) / dim**0.5, dim=1)

    return draw(gallery), draw(queries)


def _recall(got: torch.Tensor, exact: torch.Tensor) -> float:
    return sum(len(set(a) & set(b)) for a, b in zip(got.tolist(), exact.tolist())) / exact.numel()


def _set_search(index: GalleryIndex, setting: dict[str, int]) -> None:
    if "ef_search" in setting:
        index.index.hnsw.efSearch = setting["ef_search"]
    if "nprobe" in setting:
        index.index.nprobe = setting["nprobe"]


def run_config(
    kind: str, params: dict[str, Any], settings, gallery, query, exact_idx, ivf_lists: int, folder: Path
) -> list[dict[str, Any]]:
    index = GalleryIndex(gallery.shape[1], kind, ivf_lists=ivf_lists, **params)
    names = [f"{i:06d}.jpg" for i in range(gallery.shape[0])]
    start = time.perf_counter()
    index.add(gallery, names)
    build_s = time.perf_counter() - start
    path = index.save(folder / f"{kind}.index")
    start = time.perf_counter()
    index = GalleryIndex.load(path)
    load_s = time.perf_counter() - start
    rows = []
    for setting in settings:
        _set_search(index, setting)
        start = time.perf_counter()
        got, _ = index.search(query, topk=10)
        query_s = time.perf_counter() - start
        label = (
            kind
            + "".join(f" {k}={v}" for k, v in {**params, **setting}.items())
            + (f" lists={ivf_lists}" if kind == "ivf" else "")
        )
        rows.append(
            {
                "index": label,
                "recall_at_10": _recall(got, exact_idx),
                "build_s": build_s,
                "load_s": load_s,
                "query_ms_per_query": 1000 * query_s / query.shape[0],
                "queries_per_s": query.shape[0] / query_s,
                "file_mb": path.stat().st_size / 2**20,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--gallery", type=int, default=None, help="gallery size (default 100000, tiny 5000)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--noise", type=float, default=1.0, help="within-identity noise (relative to the unit centre)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    size = args.gallery or (5000 if args.tiny else 100_000)
    ivf_lists = 64 if args.tiny else 1024
    gallery, query = synthetic_features(size, args.queries, args.dim, args.noise)
    start = time.perf_counter()
    exact_idx, _ = rank(query, gallery, topk=10)
    torch_s = time.perf_counter() - start
    rows = [
        {
            "index": "dcac.rank (torch, exact)",
            "recall_at_10": 1.0,
            "query_ms_per_query": 1000 * torch_s / args.queries,
            "queries_per_s": args.queries / torch_s,
        }
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, params, settings in CONFIGS:
            rows += run_config(kind, params, settings, gallery, query, exact_idx, ivf_lists, Path(tmp))
            print(rows[-1], flush=True)
    result = {
        "benchmark": "ann_index",
        "size": "tiny" if args.tiny else "100k",
        "sizes": {
            "gallery": size,
            "queries": args.queries,
            "dim": args.dim,
            "identities": size // 8,
            "noise": args.noise,
            "topk": 10,
        },
        "environment": {
            **environment(torch.device("cpu")),
            "faiss_version": faiss.__version__,
            "faiss_threads": args.threads,
        },
        "indexes": rows,
        "command": "python benchmarks/ann_index.py " + " ".join(sys.argv[1:]),
    }
    print(
        format_table(
            rows,
            [
                ("index", "index"),
                ("recall_at_10", "recall@10"),
                ("build_s", "build s"),
                ("load_s", "load s"),
                ("query_ms_per_query", "ms / query"),
                ("queries_per_s", "queries/s"),
                ("file_mb", "file MB"),
            ],
        )
    )
    print(
        f"(build and load times are per index: shared by the rows of one kind; load average {result['environment'].get('load_average_1m')})"
    )
    out = args.out or RESULTS_DIR / f"ann_index_{result['size']}_noise{args.noise:g}_cpu.json"
    print(f"-> {write_json(out, result)}")


if __name__ == "__main__":
    main()
