"""dcac's default ONNX export inside BoxMOT, a tracker library people plug Re-ID models into: BoxMOT's own ReID
runtime reads the file and its sidecar, crops and normalises the way it always does, and gets dcac's
features; BoT-SORT tracks with them; the opt-in graphs, which take other input, are refused.

BoxMOT is installed by ``tools/install_boxmot.sh`` (``.ci/run`` runs it): in CI (``CI`` set) a missing or
half-installed BoxMOT fails these tests; elsewhere they are skipped without it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dcac
from dcac.cli import main
from dcac.inference.tracker_export import sidecar_path

RUN_SIZE = (64, 32)  # the tiny run's height × width


@pytest.fixture(scope="module")
def exported(boxmot, tiny_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("boxmot") / "dcac_reid.onnx"
    assert main(["export", "--checkpoint", str(tiny_run), "--out", str(out)]) == 0
    return out


def _frame(draw_person, boxes: list[tuple[int, int, int, int]], shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A BGR frame (as OpenCV reads video) with one person per ``(x, y, h, w)``; and the boxes as detections."""
    rgb = np.full((240, 320, 3), 90, dtype=np.uint8)
    detections = []
    for seed, (x, y, h, w) in enumerate(boxes):
        x += shift
        rgb[y : y + h, x : x + w] = np.asarray(draw_person(seed, (h, w)))
        detections.append([x, y, x + w, y + h, 0.9, 0])
    return np.ascontiguousarray(rgb[..., ::-1]), np.asarray(detections, dtype=np.float32)


def _dcac_features(tiny_run, frame_bgr: np.ndarray, detections: np.ndarray) -> torch.Tensor:
    from PIL import Image

    crops = [
        Image.fromarray(frame_bgr[int(y1) : int(y2), int(x1) : int(x2), ::-1].copy())
        for x1, y1, x2, y2, *_ in detections
    ]
    return dcac.load(tiny_run, device="cpu").extract(crops)


def _cosines(got: np.ndarray, expected: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(torch.from_numpy(np.asarray(got, dtype=np.float32)), expected, dim=1)


def test_boxmot_runtime_reads_the_sidecar_and_gets_dcacs_features(exported, tiny_run, draw_person):
    from boxmot.reid.core.runtime import ReID

    reid = ReID(exported, device="cpu")
    assert type(reid.model).__name__ == "ONNXBackend"
    assert tuple(reid.model.input_shape) == RUN_SIZE  # from the sidecar: BoxMOT's default would be 256×128
    frame, detections = _frame(draw_person, [(10, 20, 64, 32), (80, 30, 64, 32), (150, 10, 64, 32)])
    expected = _dcac_features(tiny_run, frame, detections)
    for got in (reid(frame, boxes=detections), reid.model.get_features(detections[:, :4], frame)):
        assert got.shape == (3, 32)
        assert _cosines(got, expected).min() >= 0.999


def test_crops_of_another_size_differ_only_by_boxmots_bilinear_resize(exported, tiny_run, draw_person):
    from boxmot.reid.core.runtime import ReID

    frame, detections = _frame(draw_person, [(10, 20, 150, 60), (100, 30, 90, 45), (200, 10, 40, 20)])
    got = ReID(exported, device="cpu")(frame, boxes=detections)
    # dcac resizes with PIL's bicubic filter, BoxMOT with OpenCV's bilinear one before the graph sees the crop.
    assert _cosines(got, _dcac_features(tiny_run, frame, detections)).min() >= 0.999


def test_bot_sort_tracks_people_with_dcacs_features(exported, draw_person):
    from boxmot import BotSort

    tracker = BotSort(reid_weights=exported, device="cpu", half=False)
    people = [(10, 20, 64, 32), (110, 30, 64, 32), (210, 10, 64, 32)]
    ids_per_frame = []
    for step in range(6):
        frame, detections = _frame(draw_person, people, shift=3 * step)
        tracks = tracker.update(detections, frame)
        # Track id -> the person whose box it follows (people stand 100 px apart; the filter smooths a pixel).
        ids_per_frame.append({int(row[4]): round((float(row[0]) - 10 - 3 * step) / 100) for row in tracks})
    # Each person keeps one track id from the frame it is confirmed on, and three ids exist.
    confirmed = [ids for ids in ids_per_frame if ids]
    assert len(confirmed) >= 4 and all(ids == confirmed[0] for ids in confirmed) and len(confirmed[0]) == 3
    features = [track.smooth_feat for track in tracker.active_tracks]
    assert features and all(np.asarray(f).shape == (32,) for f in features)  # dcac's feature dimension


@pytest.mark.parametrize("input_format", ["pixel_values", "raw"])
def test_opt_in_graphs_are_refused_by_boxmot(input_format, tiny_run, tmp_path, exported):
    from boxmot.reid.core.runtime import ReID

    out = tmp_path / f"osnet_x0_25_{input_format}.onnx"  # a BoxMOT-style name changes nothing
    assert main(["export", "--checkpoint", str(tiny_run), "--input", input_format, "--out", str(out)]) == 0
    with pytest.raises(ValueError, match=f"takes '{input_format}' input, not the ImageNet-normalised crops"):
        ReID(out, device="cpu")


def test_default_graph_without_its_sidecar_still_gives_dcacs_features(exported, tiny_run, tmp_path, draw_person):
    """Renamed without the sidecar, BoxMOT feeds 256×128 crops (its default size): the graph resizes them."""
    from boxmot.reid.core.runtime import ReID

    renamed = tmp_path / "osnet_x0_25_market1501.onnx"
    shutil.copyfile(exported, renamed)
    assert not sidecar_path(renamed).exists()
    reid = ReID(renamed, device="cpu")
    assert tuple(reid.model.input_shape) == (256, 128)
    frame, detections = _frame(draw_person, [(10, 20, 64, 32), (80, 30, 64, 32)])
    assert _cosines(reid(frame, boxes=detections), _dcac_features(tiny_run, frame, detections)).min() >= 0.999


def test_resize_pad_gives_dcacs_features_of_the_letterboxed_crop(exported, tiny_run, draw_person):
    """``reid_preprocess="resize_pad"`` keeps the aspect ratio and fills the rest with ImageNet's mean colour:
    the features are dcac's of that padded picture, not of the crop."""
    from boxmot.reid.core.preprocessing import resize_pad
    from boxmot.reid.core.runtime import ReID
    from PIL import Image

    frame, detections = _frame(draw_person, [(10, 20, 60, 60), (100, 30, 64, 32)])  # square, and the run's shape
    got = ReID(exported, device="cpu", preprocess_name="resize_pad")(frame, boxes=detections)
    padded = [
        Image.fromarray(resize_pad(frame[int(y1) : int(y2), int(x1) : int(x2)], RUN_SIZE)[..., ::-1].copy())
        for x1, y1, x2, y2, *_ in detections
    ]
    assert _cosines(got, dcac.load(tiny_run, device="cpu").extract(padded)).min() >= 0.999
    plain = _cosines(got, _dcac_features(tiny_run, frame, detections))
    assert plain[1] >= 0.999 and plain[0] < 0.999  # the run's shape needs no padding; the square crop does


def test_the_benchmark_measures_each_case(exported, tiny_run, image_tree, tmp_path):
    import json
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "boxmot_features.py"
    out = tmp_path / "b.json"
    args = [
        sys.executable,
        str(script),
        "--run",
        str(tiny_run),
        "--images",
        str(image_tree["gallery"]),
        "--out",
        str(out),
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {row["case"]: row for row in json.loads(out.read_text())["cases"]}
    assert rows["default"]["cos_min"] >= 0.999 and rows["default, no sidecar"]["boxmot_input_hw"] == [256, 128]
    # What the refusing sidecar prevents (small on this random model; 0.31 on the demo's trained run).
    assert rows["pixel_values, no sidecar"]["cos_min"] < 0.999
    assert rows["default, resize_pad (wide crops)"]["cos_min"] < rows["default (wide crops)"]["cos_min"]


def test_the_readme_installs_boxmot_as_ci_does():
    """The README's install block is not run by the README test (it installs packages); CI runs the script."""
    root = Path(__file__).resolve().parents[2]
    script = [
        line for line in (root / "tools" / "install_boxmot.sh").read_text().splitlines() if line.startswith("pip ")
    ]
    readme = (root / "README.md").read_text()
    block = readme[readme.index("```bash\npip install --no-deps boxmot") + len("```bash\n") :].split("```")[0]
    assert block.splitlines() == script and len(script) == 2
    assert "bash tools/install_boxmot.sh" in (root / ".ci" / "run").read_text()
