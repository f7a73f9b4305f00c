"""CPU feature extraction against the machine's own matrix-product peak: images/s and MFU per path.

    python benchmarks/cpu_inference.py            # CLIP ViT-B/16 at 256x128 (random weights), ~10 min idle
    python benchmarks/cpu_inference.py --quick    # ViT-B/16, batches 1 and 16 only
    python benchmarks/cpu_inference.py --tiny     # the demo's tiny model, seconds (smoke test)

First the **sgemm peak** per thread count: the best of several large square fp32 ``torch.mm`` calls
(``--gemm-size``, 3072 by default), in FLOP/s; a bf16 ``torch.mm`` of the same size is measured next to it
for reference. Then every extraction **path** at every batch size and thread count:

* ``torch fp32`` / ``torch bf16`` — ``model.extract`` under ``torch.no_grad`` (bf16: CPU autocast);
* ``ort fp32`` / ``ort int8`` — onnxruntime's CPUExecutionProvider on ``dcac export``'s pixel_values graph
  (fp32) and its int8 variant (dynamic quantization), intra-op threads = the row's thread count.

Each row first measures the sgemm peak again (two calls) and divides by the larger of that and the
first measurement, so that a row run while other jobs took the cores is compared with what the GEMM got
then, but an MFU never rests on a peak lower than the best seen. Each row runs one untimed warm-up batch, then ``max(1, 16 // batch)`` timed batches (best-of for batch 1 is
the median of its calls). ``MFU`` = images/s × the model's FLOPs per image (``flops.extraction_flops``:
the forward's matrix products at 2 FLOPs per multiply-add, dcac's own count) / the sgemm peak at the same
thread count. Weights are random (speed does not depend on them). The JSON records the 1-minute load average
before and after every row: on a shared machine other jobs lower every figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import RESULTS_DIR, environment, format_table, write_json
from flops import extraction_flops
from onnx_variants import _predictor

from dcac.inference.onnx_export import export_onnx
from dcac.inference.onnx_inputs import InputSpec

PATHS = ("torch fp32", "torch bf16", "ort fp32", "ort int8")


def gemm_peak(size: int, threads: int, dtype: torch.dtype, repeats: int) -> float:
    """Best FLOP/s of ``repeats`` square ``torch.mm`` calls of ``size`` (one untimed warm-up call)."""
    torch.set_num_threads(threads)
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    out = torch.empty(size, size, dtype=dtype)
    torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def _time_batches(call, batch: int) -> float:
    """images/s of ``call`` on one batch: one warm-up, then ``max(1, 16 // batch)`` timed calls (median)."""
    call()
    durations = []
    for _ in range(max(1, 16 // batch)):
        start = time.perf_counter()
        call()
        durations.append(time.perf_counter() - start)
    return batch / statistics.median(durations)


def _torch_call(model, images: torch.Tensor, bf16: bool):
    def call():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model.extract(images)

    return call


def _ort_call(path: Path, images: np.ndarray, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: images})


def _exports(predictor, folder: Path, paths: list[str]) -> dict[str, Path]:
    """The ONNX files the ``ort`` paths need, written by dcac's own exporter."""
    files = {}
    for precision in ("fp32", "int8"):
        if f"ort {precision}" in paths:
            files[precision] = folder / f"pixel_values_{precision}.onnx"
            export_onnx(
                predictor, files[precision], input_spec=InputSpec("pixel_values"), precision=precision, verify=False
            )
    return files


def run_grid(args, predictor, flops: float, peaks: dict[int, float]) -> list[dict[str, Any]]:
    model = predictor.model
    height, width = predictor.image_size
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = _exports(predictor, Path(tmp), args.paths)
        for threads in args.threads:
            for path in args.paths:
                for batch in args.batches:
                    images = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(batch))
                    kind, precision = path.split()
                    torch.set_num_threads(threads)
                    if kind == "torch":
                        call = _torch_call(model, images, precision == "bf16")
                    else:
                        call = _ort_call(files[precision], images.numpy(), threads)
                    load_before = os.getloadavg()[0]
                    # The peak right next to the row: on a shared machine the load changes from row to row.
                    peak = gemm_peak(args.gemm_size, threads, torch.float32, 2)
                    rate = _time_batches(call, batch)
                    rows.append(
                        {
                            "path": path,
                            "batch": batch,
                            "threads": threads,
                            "images_per_s": rate,
                            "gflop_per_s": rate * flops / 1e9,
                            "mfu_vs_sgemm": rate * flops / max(peak, peaks[threads]),
                            "sgemm_next_to_row_flop_per_s": peak,
                            "mfu_vs_sgemm_next_to_row": rate * flops / peak,
                            "load_before": load_before,
                            "load_after": os.getloadavg()[0],
                        }
                    )
                    print(f"  {path} batch {batch} threads {threads}: {rate:.2f} images/s", flush=True)
    return rows


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    best = max(rows, key=lambda r: r["mfu_vs_sgemm"])
    by_key = {(r["path"], r["batch"], r["threads"]): r["images_per_s"] for r in rows}
    int8_over_fp32 = {
        f"batch {b} threads {t}": by_key[("ort int8", b, t)] / by_key[("ort fp32", b, t)]
        for (p, b, t) in by_key
        if p == "ort int8" and ("ort fp32", b, t) in by_key
    }
    return {"fastest": best, "ort_int8_over_fp32_images_per_s": int8_over_fp32}


def _onnxruntime_version() -> str | None:
    try:
        return metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the demo preset's tiny model, small GEMM (smoke test)")
    parser.add_argument("--quick", action="store_true", help="batches 1 and 16 only")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,16,64)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of: {', '.join(PATHS)}")
    parser.add_argument("--gemm-size", type=int, default=None, help="square sgemm size (default 3072, tiny 512)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in (args.batches or ("1,16" if args.quick or args.tiny else "1,16,64")).split(",")]
    args.threads = [int(t) for t in args.threads.split(",")]
    args.paths = [p.strip() for p in args.paths.split(",")]
    unknown = set(args.paths) - set(PATHS)
    if unknown:
        parser.error(f"--paths: unknown {sorted(unknown)}; expected a subset of {list(PATHS)}")
    args.gemm_size = args.gemm_size or (512 if args.tiny else 3072)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_start = os.getloadavg()[0]
    peaks = {t: gemm_peak(args.gemm_size, t, torch.float32, 3 if args.tiny else 5) for t in args.threads}
    bf16_peaks = {t: gemm_peak(args.gemm_size, t, torch.bfloat16, 3 if args.tiny else 5) for t in args.threads}
    for t in args.threads:
        print(f"sgemm peak, {t} thread(s): {peaks[t] / 1e9:.1f} GFLOP/s (bf16 mm {bf16_peaks[t] / 1e9:.1f})")
    with tempfile.TemporaryDirectory() as tmp:
        predictor = _predictor("demo" if args.tiny else None, Path(tmp))
        height, width = predictor.image_size
        flops = extraction_flops(predictor.model, torch.randn(2, 3, height, width))
        rows = run_grid(args, predictor, flops, peaks)
    print(
        format_table(
            rows,
            [
                ("path", "path"),
                ("batch", "batch"),
                ("threads", "threads"),
                ("images_per_s", "images/s"),
                ("gflop_per_s", "GFLOP/s"),
                ("mfu_vs_sgemm", "MFU vs sgemm"),
                ("load_before", "load"),
            ],
        )
    )
    summary = _summary(rows)
    best = summary["fastest"]
    print(
        f"fastest: {best['path']} batch {best['batch']} threads {best['threads']}: "
        f"{best['mfu_vs_sgemm']:.1%} of the sgemm peak ({best['images_per_s']:.2f} images/s)"
    )
    result = {
        "benchmark": "cpu_inference",
        "size": "tiny" if args.tiny else "vit_b16",
        "sizes": {"model_input_hw": [height, width], "batches": args.batches, "threads": args.threads},
        "model_flops_per_image": flops,
        "gemm_size": args.gemm_size,
        "sgemm_peak_flop_per_s": {str(t): p for t, p in peaks.items()},
        "bf16_mm_peak_flop_per_s": {str(t): p for t, p in bf16_peaks.items()},
        "environment": {**environment(torch.device("cpu")), "onnxruntime_version": _onnxruntime_version()},
        "load_average_1m_start": load_start,
        "load_average_1m_end": os.getloadavg()[0],
        "rows": rows,
        "summary": summary,
        "notes": ["random weights; MFU = images/s x model FLOPs per image / sgemm peak at the same thread count"],
        "command": "python benchmarks/cpu_inference.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    out = args.out or RESULTS_DIR / f"cpu_inference_{result['size']}.json"
    print(f"-> {write_json(out, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
