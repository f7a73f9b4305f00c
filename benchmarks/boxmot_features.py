"""dcac's ONNX exports inside BoxMOT's own ReID runtime: cosine of BoxMOT's features to ``dcac.load(run)``'s.

    python benchmarks/boxmot_features.py --run runs/demo/dcac --images runs/demo/data/synth_c/query

Needs BoxMOT (``tools/install_boxmot.sh``). Each image is pasted at its own size into a grey frame (BGR, as
OpenCV reads video) and BoxMOT's ``ReID`` crops it back through its box; dcac extracts the same image with
``dcac.load(run).extract``. Rows:

- ``default``: ``dcac export`` (the tracker graph and its sidecar) with BoxMOT's default ``resize``;
- ``default, resize_pad``: the same file with ``reid_preprocess="resize_pad"`` (aspect kept, mean-colour pad);
- ``wide crops``: both again on the images stretched to 1.5× their width (a loose detector box, another aspect
  ratio than the run's): ``resize`` squashes them as dcac does, ``resize_pad`` letterboxes them;
- ``default, no sidecar``: the file copied to an OSNet-style name without its sidecar (BoxMOT feeds 256×128);
- ``pixel_values, no sidecar``: the opt-in ``--input pixel_values`` graph without the sidecar that refuses
  it: the silent mismatch a tracker got from a plain export before the tracker graph became the default.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from common import RESULTS_DIR, environment, format_table, write_json
from PIL import Image

import dcac
from dcac.cli import main as dcac_main
from dcac.inference.image_inputs import find_images


def _frames(images: list[Image.Image]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One BGR frame and its one box per image (image pasted at (8, 8), its own size)."""
    out = []
    for image in images:
        frame = np.full((image.height + 16, image.width + 16, 3), 114, dtype=np.uint8)
        frame[8 : 8 + image.height, 8 : 8 + image.width] = np.asarray(image)[..., ::-1]
        out.append((frame, np.array([[8, 8, 8 + image.width, 8 + image.height]], dtype=np.float32)))
    return out


def _boxmot_features(model_file: Path, frames, preprocess: str | None) -> tuple[torch.Tensor, list[int]]:
    from boxmot.reid.core.runtime import ReID

    reid = ReID(model_file, device="cpu", preprocess_name=preprocess)
    rows = [reid(frame, boxes=boxes)[0] for frame, boxes in frames]
    return torch.from_numpy(np.stack(rows)).float(), list(reid.model.input_shape)


def _export(run: str, out: Path, *extra: str) -> Path:
    if dcac_main(["export", "--checkpoint", run, "--out", str(out), *extra]) != 0:
        raise SystemExit(f"dcac export failed for {out}")
    return out


def measure(run: str, images: list[Image.Image], folder: Path) -> list[dict[str, Any]]:
    model = dcac.load(run, device="cpu")
    wide = [image.resize((round(image.width * 1.5), image.height), Image.BICUBIC) for image in images]
    inputs = {"": (_frames(images), model.extract(images)), "wide crops": (_frames(wide), model.extract(wide))}
    default = _export(run, folder / "dcac_reid.onnx")
    renamed = folder / "osnet_x0_25_dcac.onnx"
    shutil.copyfile(default, renamed)
    plain = _export(run, folder / "pixel_values.onnx", "--input", "pixel_values")
    unguarded = folder / "osnet_x0_25_plain.onnx"
    shutil.copyfile(plain, unguarded)
    cases = (
        ("default", default, None, ""),
        ("default, resize_pad", default, "resize_pad", ""),
        ("default, no sidecar", renamed, None, ""),
        ("pixel_values, no sidecar", unguarded, None, ""),
        ("default", default, None, "wide crops"),
        ("default, resize_pad", default, "resize_pad", "wide crops"),
    )
    rows = []
    for name, model_file, preprocess, crops in cases:
        frames, expected = inputs[crops]
        got, fed = _boxmot_features(model_file, frames, preprocess)
        cosine = F.cosine_similarity(got, expected, dim=1)
        rows.append(
            {
                "case": f"{name} ({crops})" if crops else name,
                "boxmot_input_hw": fed,
                "cos_min": cosine.min().item(),
                "cos_mean": cosine.mean().item(),
                "cos_max": cosine.max().item(),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run folder (or Hub id)")
    parser.add_argument("--images", required=True, help="folder of person crops")
    parser.add_argument("--limit", type=int, default=64, help="images used (sorted by path)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    files = find_images(args.images)[: args.limit]
    images = [Image.open(f).convert("RGB") for f in files]
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(args.run, images, Path(tmp))
    import boxmot

    result = {
        "benchmark": "boxmot_features",
        "run": args.run,
        "images": {
            "folder": args.images,
            "count": len(images),
            "sizes_hw": sorted({(i.height, i.width) for i in images}),
        },
        "environment": {**environment(torch.device("cpu")), "boxmot": boxmot.__version__},
        "cases": rows,
        "command": "python benchmarks/boxmot_features.py " + " ".join(sys.argv[1:]),
    }
    shown = [{k: (f"{v:.4f}" if k.startswith("cos") else v) for k, v in row.items()} for row in rows]
    columns = [("case", "case"), ("boxmot_input_hw", "BoxMOT feeds"), ("cos_min", "min cos"), ("cos_mean", "mean cos")]
    print(format_table(shown, [*columns, ("cos_max", "max cos")]))
    out = args.out or RESULTS_DIR / f"boxmot_features_{Path(args.run).name}.json"
    print(f"-> {write_json(out, result)}")


if __name__ == "__main__":
    main()
