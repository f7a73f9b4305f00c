"""Feature-extraction throughput of the Re-ID model (CLIP ViT-B/16 at 256x128): precision x batch size.

    python benchmarks/extract.py --out benchmarks/results/extract_<device>.json   # full grid (GPU)
    python benchmarks/extract.py --reduced        # ViT-B/16, small batches and image counts (CPU)
    python benchmarks/extract.py --tiny           # tiny model, seconds (the test suite's smoke test)

Every configuration runs ``dcac.evaluation.features.extract_features`` (what the memory rebuild, evaluation and
inference use) on a random-weight model from ``dcac.models.build.build_reid_model``, over synthetic images
already on the device, so images/s measures the model, not image decoding. Autocast precisions are those
of ``train.mixed_precision`` (fp32 = no autocast).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from common import (
    RESULTS_DIR,
    environment,
    format_table,
    gib,
    peak_memory,
    pick_device,
    reset_peak_memory,
    result_slug,
    time_calls,
    write_json,
)
from flops import extraction_flops, utilisation
from torch.utils.data import DataLoader, Dataset

from dcac.config import load_config
from dcac.engine.training_setup import AUTOCAST_DTYPES
from dcac.evaluation.features import extract_features
from dcac.models.build import build_reid_model


@dataclass(frozen=True)
class Grid:
    name: str
    preset: str
    num_ids: int
    precisions: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    images: int  # images per timed pass (at least two batches)
    repeats: int  # timed passes


GRIDS = {
    "full": Grid("full", "ma_to_ms", 751, ("fp32", "bf16", "fp16"), (64, 256, 512), images=4096, repeats=3),
    "reduced": Grid("reduced", "ma_to_ms", 751, ("fp32", "bf16"), (16, 64), images=128, repeats=1),
    "tiny": Grid("tiny", "demo", 16, ("fp32", "bf16"), (8, 32), images=64, repeats=2),
}


class _Batches(Dataset):
    """Ready-made batches (``{"image": B x 3 x H x W}``), so the loader adds no per-image work."""

    def __init__(self, images: torch.Tensor, batch_size: int) -> None:
        self.chunks = images.split(batch_size)

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.chunks[index]}


def run(grid: Grid, device: torch.device) -> dict[str, Any]:
    config = load_config(grid.preset)
    torch.manual_seed(0)
    with torch.device(device):
        model = build_reid_model(config, grid.num_ids)
    model.to(device)
    images = (
        torch.randn(grid.images, 3, config.data.height, config.data.width, generator=torch.Generator().manual_seed(1))
        * 0.5
    ).to(device)
    flops_per_image = extraction_flops(model, images[:2])
    rows = []
    first: tuple[str, torch.Tensor] | None = None  # (label, features) of the first configuration
    for precision in grid.precisions:
        for batch_size in grid.batch_sizes:
            # batch_size=None: the dataset's items are already batches (no collation).
            loader = DataLoader(_Batches(images, batch_size), batch_size=None)
            extract = partial(extract_features, model, loader, device=device, autocast_dtype=AUTOCAST_DTYPES[precision])
            row: dict[str, Any] = {"precision": precision, "batch_size": batch_size, "images": grid.images}
            try:
                reset_peak_memory(device)
                feats = extract()
                timing = time_calls(extract, warmup=0, repeats=grid.repeats, device=device)
            except torch.cuda.OutOfMemoryError as err:
                rows.append({**row, "status": f"out of memory: {str(err).splitlines()[0]}"})
                torch.cuda.empty_cache()
                continue
            if first is None:
                first = (f"{precision} batch {batch_size}", feats)
            rows.append(
                {
                    **row,
                    "status": "ok",
                    "images_per_s": grid.images * timing["repeats"] / timing["total_s"],
                    "ms_per_pass": timing["median_s"] * 1000,
                    **peak_memory(device),
                    "max_abs_feature_diff_vs_first": float((feats - first[1]).abs().max()),
                }
            )
    return {
        "benchmark": "extract",
        "size": grid.name,
        "sizes": {
            "encoder": config.encoder.preset,
            "image_hw": [config.data.height, config.data.width],
            "images_per_pass": grid.images,
            "timed_passes": grid.repeats,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "model_flops_per_image": flops_per_image,
        "environment": environment(device),
        "configurations": rows,
        "notes": [
            "images/s: synchronised wall time of dcac.evaluation.features.extract_features over images already on the "
            "device (one untimed pass first); features are L2-normalised f_bn in float32",
            "peak memory: CUDA max_memory_allocated per configuration; on CPU the process's peak RSS so far "
            "(cumulative over the configurations, so only the largest is meaningful)",
            "model_flops_per_image: torch.utils.flop_counter count of the Re-ID model's forward (benchmarks/flops.py); "
            "tflops_per_s = images/s x that count; mfu = tflops_per_s / the device's dense bf16 peak (absent for "
            "devices not in flops.PEAK_BF16_DENSE_TFLOPS)",
            "max_abs_feature_diff_vs_first: largest elementwise difference of the unit-norm features from the "
            f"first configuration ({first[0] if first else 'none'})",
        ],
        "command": "python benchmarks/extract.py " + " ".join(sys.argv[1:]),
    }


_TABLE = [
    ("precision", "precision"),
    ("batch_size", "batch"),
    ("images_per_s", "images/s"),
    ("tflops_per_s", "TFLOP/s"),
    ("mfu", "MFU"),
    ("ms_per_pass", "ms / pass"),
    ("peak_gib", "peak GiB"),
    ("max_abs_feature_diff_vs_first", "max |f - f_first|"),
    ("status", "status"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--tiny", action="store_true", help="tiny model (seconds; smoke test)")
    scale.add_argument("--reduced", action="store_true", help="ViT-B/16 with small batches and image counts (CPU)")
    parser.add_argument("--batch-sizes", default=None, help="comma list, e.g. 64,256")
    parser.add_argument("--precisions", default=None, help="comma list of fp32,bf16,fp16")
    parser.add_argument("--images", type=int, default=None, help="images per timed pass")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON file (default benchmarks/results/extract_<device>[_<size>].json)"
    )
    args = parser.parse_args(argv)

    grid = GRIDS["tiny" if args.tiny else "reduced" if args.reduced else "full"]
    if args.batch_sizes:
        grid = replace(grid, batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")))
    if args.precisions:
        precisions = tuple(p.strip() for p in args.precisions.split(","))
        unknown = [p for p in precisions if p not in AUTOCAST_DTYPES]
        if unknown:
            raise SystemExit(f"unknown precision(s) {unknown}; choose from {list(AUTOCAST_DTYPES)}")
        grid = replace(grid, precisions=precisions)
    if args.images:
        grid = replace(grid, images=args.images)
    device = pick_device(args.device)

    result = run(grid, device)
    env = result["environment"]
    for row in result["configurations"]:
        row["peak_gib"] = gib(row.get("peak_memory_bytes"))
        if row["status"] == "ok":
            row.update(utilisation(row["images_per_s"], result["model_flops_per_image"], env["device_name"]))
    print(
        f"{grid.name} extraction on {env['device_name']} (torch {env['torch_version']}), {result['sizes']['image_hw']} images"
    )
    has_mfu = any(row.get("mfu") is not None for row in result["configurations"])
    print(format_table(result["configurations"], [c for c in _TABLE if has_mfu or c[0] != "mfu"]))
    print(f"model FLOPs per image (forward): {result['model_flops_per_image'] / 1e9:.4g} GFLOP")
    out = args.out or RESULTS_DIR / f"extract_{result_slug(env)}{'' if grid.name == 'full' else '_' + grid.name}.json"
    print(f"wrote {write_json(out, result)}")
    return 0 if all(r["status"] == "ok" for r in result["configurations"]) else 1


if __name__ == "__main__":
    sys.exit(main())
