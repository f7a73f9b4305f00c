"""ONNX export variants against PyTorch: cosine similarity of the features and images/s with onnxruntime.

    python benchmarks/onnx_variants.py                # CLIP ViT-B/16 at 256x128 (random weights), CPU
    python benchmarks/onnx_variants.py --tiny         # the demo's tiny model, seconds (smoke test)

Variants: ``pixel_values`` fp32 (the caller preprocesses), and the self-contained ``raw`` input (uint8
crops resized and normalised in the graph) in fp32, fp16 and int8.  Every variant gets the same synthetic
crops of one detection-like size (``--crop``) and is compared with two references:

- ``cos_vs_pipeline``: ``ReIDPredictor.extract`` on the same crops as PIL images (PIL bicubic resize to
  uint8, then normalisation): what a user of ``dcac.load`` gets.  For ``raw`` it includes the difference
  between the graph's float resize and PIL's rounded one (``max_pixel_diff`` gives that in 0..255 units).
- ``cos_vs_graph``: the exported PyTorch module itself on the same input (the conversion's own error).

images/s: onnxruntime CPUExecutionProvider (intra-op threads = ``--threads``) on batches of ``--batch``
crops after one warm-up batch; for ``pixel_values`` the (untimed) preprocessing is done beforehand.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from common import RESULTS_DIR, environment, format_table, write_json
from PIL import Image

from dcac.config import load_config
from dcac.inference.onnx_export import build_export_module, export_onnx
from dcac.inference.onnx_inputs import InputSpec
from dcac.inference.predictor import ReIDPredictor
from dcac.models.build import build_reid_model
from dcac.storage.checkpoint import save_tensors_atomic
from dcac.storage.run_folder import write_run_metadata

VARIANTS = (("pixel_values", "fp32"), ("raw", "fp32"), ("raw", "fp16"), ("raw", "int8"))


def _crops(count: int, height: int, width: int, seed: int = 0) -> list[Image.Image]:
    """Smooth random pictures (coarse noise upsampled), so resizing behaves as on photographs."""
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, size=(12, 6, 3), dtype=np.uint8)).resize((width, height), Image.BILINEAR)
        for _ in range(count)
    ]


def _predictor(preset: str | None, folder: Path) -> ReIDPredictor:
    config = load_config(preset)
    torch.manual_seed(0)
    model = build_reid_model(config, num_ids=751)
    model.bottleneck.running_mean.normal_(0.0, 0.1)
    model.bottleneck.running_var.uniform_(0.5, 2.0)
    save_tensors_atomic(model.state_dict(), folder / "reid_model.safetensors")
    write_run_metadata(folder, config, {"num_ids": 751, "num_cams": 2, "sources": ["random"]})
    return ReIDPredictor.from_run(folder)


def _images_per_s(session, name: str, batches: list[np.ndarray]) -> float:
    session.run(None, {name: batches[0]})  # warm-up
    start = time.perf_counter()
    for batch in batches:
        session.run(None, {name: batch})
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def _variant(predictor, fmt: str, precision: str, crops, folder: Path, args) -> dict[str, Any]:
    import onnxruntime

    spec = InputSpec(fmt, "nhwc" if fmt == "raw" else "nchw")
    path = folder / f"{fmt}_{precision}.onnx"
    start = time.perf_counter()
    export_onnx(predictor, path, input_spec=spec, precision=precision, verify=False)
    export_s = time.perf_counter() - start
    raw = torch.from_numpy(np.stack([np.asarray(c) for c in crops]))
    inputs = raw if fmt == "raw" else predictor.preprocess(crops)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batches = [inputs[i : i + args.batch].numpy() for i in range(0, len(inputs), args.batch)]
    got = torch.from_numpy(np.concatenate([session.run(None, {name: b})[0] for b in batches])).float()
    with torch.no_grad():
        graph = build_export_module(predictor, True, spec)(inputs)
    pipeline = predictor.extract(crops)
    return {
        "variant": f"{fmt} {precision}",
        "cos_vs_pipeline_min": F.cosine_similarity(got, pipeline).min().item(),
        "cos_vs_pipeline_mean": F.cosine_similarity(got, pipeline).mean().item(),
        "cos_vs_graph_min": F.cosine_similarity(got, graph).min().item(),
        "images_per_s": _images_per_s(session, name, batches),
        "file_mb": path.stat().st_size / 2**20,
        "export_s": export_s,
    }


def _pixel_difference(predictor, crops) -> float:
    """Largest |graph resize − PIL resize| over the crops, in 0..255 units (both before normalisation)."""
    height, width = predictor.image_size
    module = build_export_module(predictor, True, InputSpec("raw", "nhwc")).to_model_input
    raw = torch.from_numpy(np.stack([np.asarray(c) for c in crops]))
    with torch.no_grad():
        graph = module(raw) * module.std + module.mean
    pil = predictor.preprocess(crops) * module.std + module.mean
    return float((graph - pil).abs().max() * 255)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the demo preset's tiny model")
    parser.add_argument("--images", type=int, default=None, help="crops per variant (default 64, tiny 32)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", default="320x128", help="crop size HxW fed to every variant")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    crop_h, crop_w = (int(v) for v in args.crop.split("x"))
    crops = _crops(args.images or (32 if args.tiny else 64), crop_h, crop_w)
    with tempfile.TemporaryDirectory() as tmp:
        predictor = _predictor("demo" if args.tiny else None, Path(tmp))
        rows = [_variant(predictor, fmt, precision, crops, Path(tmp), args) for fmt, precision in VARIANTS]
        pixel_diff = _pixel_difference(predictor, crops)
        start = time.perf_counter()
        predictor.extract(crops, batch_size=args.batch)
        torch_rate = len(crops) / (time.perf_counter() - start)
        size = predictor.image_size
    result = {
        "benchmark": "onnx_variants",
        "size": "tiny" if args.tiny else "vit_b16",
        "sizes": {"model_input_hw": list(size), "crop_hw": [crop_h, crop_w], "images": len(crops), "batch": args.batch},
        "environment": {**environment(torch.device("cpu")), "onnxruntime_threads": args.threads},
        "variants": rows,
        "raw_resize_max_pixel_diff_vs_pil": pixel_diff,
        "pytorch_pipeline_images_per_s": torch_rate,
        "notes": ["random weights: int8 cosine on a trained model can differ; cosines are per-crop minima/means"],
        "command": "python benchmarks/onnx_variants.py " + " ".join(sys.argv[1:]),
    }
    shown = [{k: (f"{v:.6f}" if k.startswith("cos") else v) for k, v in row.items()} for row in rows]
    print(
        format_table(
            shown,
            [
                ("variant", "variant"),
                ("cos_vs_pipeline_min", "min cos vs PyTorch pipeline"),
                ("cos_vs_pipeline_mean", "mean cos"),
                ("cos_vs_graph_min", "min cos vs exported module"),
                ("images_per_s", "images/s"),
                ("file_mb", "MB"),
                ("export_s", "export s"),
            ],
        )
    )
    print(
        f"PyTorch pipeline (PIL resize + model, {torch.get_num_threads()} threads): {torch_rate:.1f} images/s; "
        f"graph vs PIL resize: max {pixel_diff:.2f} / 255"
    )
    out = args.out or RESULTS_DIR / f"onnx_variants_{result['size']}_cpu.json"
    print(f"-> {write_json(out, result)}")


if __name__ == "__main__":
    main()
