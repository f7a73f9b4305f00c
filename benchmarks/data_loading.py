"""Training data loading: can the loader feed the GPU step? Images/s of the trainer's own loader per worker count.

    python benchmarks/data_loading.py                    # workers 0,1,2 (this machine's cores), -> results/data_loading_<host>.json
    python benchmarks/data_loading.py --workers 0,4,8    # a bigger host
    python benchmarks/data_loading.py --tiny             # seconds (the test suite's smoke test)
    python benchmarks/data_loading.py --augment-on loader  # only the per-image augmentation rows

The loader is what ``dcac.engine.trainer`` builds: ``ReIDImageDataset`` over Market-layout JPEG files (128x64,
Market-1501's size, written by ``dcac.demo.synthetic`` and read through ``get_dataset``), the training transform
(resize to 256x128, flip, pad + crop, normalise, random erasing) and the P x K batch sampler, batch 64. With the
latent cache (dcac's default) the 128x128 diffusion view is not decoded per step; ``--diffusion-view`` adds it
(the reference design's per-step VAE path). The table compares each row with ``--target`` images/s (default:
dcac's compiled step on an H100, ``results/train_step_h100.json``) and says how many workers reach it at the
measured per-worker rate. The first batch (worker start-up, paid once per epoch) is timed apart.

``augment_on`` is ``data.augment_on``: ``loader`` augments each image in the workers (TrainTransform),
``device`` makes the workers only decode and resize (uint8) and the step augment the batch
(BatchTrainAugment); for ``device`` rows, ``augment images/s`` is that batch augmentation's own rate on the
GPU when there is one (else on this CPU, one thread), timed apart from the loader.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, environment, format_table, time_calls, write_json

_H100_RESULT = RESULTS_DIR / "train_step_h100.json"


def _default_target() -> float | None:
    """dcac's step rate measured on the H100, if that result file is present."""
    if not _H100_RESULT.is_file():
        return None
    rows = json.loads(_H100_RESULT.read_text())["variants"]
    return next((r["images_per_s"] for r in rows if r["name"] == "dcac" and r.get("status") == "ok"), None)


def measure(
    records, workers: int, *, batch_size: int, batches: int, diffusion_view: bool, augment_on: str
) -> dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader

    from dcac.data.image_dataset import ReIDImageDataset
    from dcac.data.sampler import PKBatchSampler
    from dcac.data.transforms import ResizeTransform, build_diffusion_transform, build_train_transform

    dataset = ReIDImageDataset(
        records,
        ResizeTransform(256, 128) if augment_on == "device" else build_train_transform(256, 128),
        diffusion_transform=build_diffusion_transform(128) if diffusion_view else None,
    )
    sampler = PKBatchSampler([r.pid for r in records], batch_size, 4, seed=0)
    if len(sampler) < batches + 1:
        raise SystemExit(f"{len(records)} images give {len(sampler)} batches; need {batches + 1}")
    torch.manual_seed(0)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers)
    start = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
    seconds = time.perf_counter() - start
    assert batch["image"].shape == (batch_size, 3, 256, 128)
    del iterator
    row = {
        "augment_on": augment_on,
        "workers": workers,
        "images_per_s": batches * batch_size / seconds,
        "first_batch_s": first_s,
        "timed_batches": batches,
    }
    if augment_on == "device":
        row.update(batch_augment_rate(batch["image"], batches))
    return row


def batch_augment_rate(images, repeats: int) -> dict[str, Any]:
    """Images/s of BatchTrainAugment on a loaded (uint8) batch, on the GPU if there is one, else this CPU."""
    import torch

    from dcac.data.batch_augment import BatchTrainAugment

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    augment, images = BatchTrainAugment(256, 128), images.to(device)
    out = augment(images)
    assert out.shape == images.shape and out.dtype == torch.float32
    timing = time_calls(lambda: augment(images), warmup=1, repeats=repeats, device=device, sync_each_call=False)
    return {"augment_device": device.type, "augment_images_per_s": repeats * len(images) / timing["total_s"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="0,1,2", help="comma list of DataLoader worker counts")
    parser.add_argument("--batches", type=int, default=30, help="timed batches per row (after the first)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--diffusion-view", action="store_true", help="also decode the 128x128 diffusion view (per-step VAE path)"
    )
    parser.add_argument(
        "--target", type=float, default=None, help="images/s the loader must sustain (default: dcac on the H100)"
    )
    parser.add_argument("--augment-on", default="loader,device", help="comma list of data.augment_on values")
    parser.add_argument("--tiny", action="store_true", help="2 timed batches of 16, workers 0 and 1")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.tiny:
        args.workers, args.batches, args.batch_size = "0,1", 2, 16
    workers = [int(w) for w in args.workers.split(",")]
    target = args.target if args.target is not None else _default_target()

    import torch

    from dcac.data.datasets import get_dataset
    from dcac.demo.synthetic import write_synthetic

    torch.set_num_threads(1)  # as in a DataLoader worker; the main-process row (0 workers) then uses one core too
    num_ids = max(args.batch_size // 4 * (args.batches + 2), 16)
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic(
            tmp, domains=["synth_a"], num_train_ids=num_ids, num_test_ids=2, images_per_id=6, num_distractors=0
        )
        records = get_dataset("synth_a", tmp).train
        rows = [
            measure(
                records,
                w,
                batch_size=args.batch_size,
                batches=args.batches,
                diffusion_view=args.diffusion_view,
                augment_on=place,
            )
            for place in args.augment_on.split(",")
            for w in workers
        ]
    per_worker = {
        place: max(
            (r["images_per_s"] / r["workers"] for r in rows if r["workers"] > 0 and r["augment_on"] == place),
            default=next(r["images_per_s"] for r in rows if r["augment_on"] == place),
        )
        for place in args.augment_on.split(",")
    }
    for row in rows:
        if target:
            row["x_target"] = row["images_per_s"] / target
    summary = {
        "benchmark": "data_loading",
        "environment": environment(torch.device("cpu")),
        "batch_size": args.batch_size,
        "image_size_on_disk": [128, 64],
        "diffusion_view": args.diffusion_view,
        "target_images_per_s": target,
        "best_images_per_s_per_worker": per_worker,
        "workers_for_target": None if not target else {k: int(-(-target // v)) for k, v in per_worker.items()},
        "rows": rows,
        "command": "python benchmarks/data_loading.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    print(
        format_table(
            rows,
            [
                ("augment_on", "augment on"),
                ("workers", "workers"),
                ("images_per_s", "images/s"),
                ("first_batch_s", "first batch s"),
                ("x_target", "x target"),
                ("augment_device", "augment device"),
                ("augment_images_per_s", "augment images/s"),
            ],
        )
    )
    for place, rate in per_worker.items() if target else ():
        needed = summary["workers_for_target"][place]
        print(f"augment on {place}: target {target:.0f} images/s needs ~{needed} workers at {rate:.0f} images/s each")
    out = (
        args.out
        or RESULTS_DIR / f"data_loading{'_tiny' if args.tiny else ''}_{platform.machine()}_{os.cpu_count()}cpu.json"
    )
    print(f"wrote {write_json(out, summary)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
