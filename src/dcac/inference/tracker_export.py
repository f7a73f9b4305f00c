"""What a tracker needs next to an exported graph: BoxMOT's metadata sidecar and its appearance threshold.

BoxMOT (25.x) reads ``<file>.onnx.metadata.json`` next to a ReID ONNX file: ``model_kwargs.img_size`` is the
size it resizes each crop to (bilinear), and it always feeds ``(rgb/255 − ImageNet mean) / ImageNet std``
as ``N×3×H×W`` float. The tracker-facing graph (``InputSpec("imagenet")``, the default) takes exactly that
and resizes it to the run's size itself, so its sidecar only names the run's size (no resize happens in the
graph then). The other graphs take another input; their sidecar carries a ``model_kwargs`` entry BoxMOT's
schema check rejects, so BoxMOT refuses to load them with this module's message instead of producing wrong
features. The ``dcac_*`` keys repeat the graph's own metadata for people reading the file.

BoxMOT's appearance gates are cosine distances, ``1 − cos`` (BoT-SORT ``appearance_thresh``, StrongSORT
``max_cos_dist``); ``cosine_distance_threshold`` converts a ``dcac calibrate`` threshold to one.
"""

from __future__ import annotations

import json
from pathlib import Path

from dcac.inference.onnx_inputs import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from dcac.storage.checkpoint import write_json_atomic

# BoxMOT's ``ARTIFACT_METADATA_SCHEMA_VERSION`` and ``MODEL_KWARGS_SCHEMA_VERSION`` (boxmot/reid/core).
SIDECAR_SCHEMA_VERSION = 1
MODEL_KWARGS_SCHEMA_VERSION = 1


def sidecar_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` → ``model.onnx.metadata.json`` (BoxMOT's ``artifact_metadata_path``)."""
    path = Path(onnx_path)
    return path.with_name(f"{path.name}.metadata.json")


def refusal_message(spec: InputSpec) -> str:
    """Why a tracker feeding ImageNet-normalised crops must not use a graph of ``spec``."""
    return (
        f"this dcac graph takes {spec.format!r} input, not the ImageNet-normalised crops a tracker feeds: "
        "export it with 'dcac export' without --input (or --input imagenet)"
    )


def sidecar_contents(spec: InputSpec, onnx_metadata: dict[str, str]) -> dict[str, object]:
    """The sidecar of a graph of ``spec`` whose ONNX metadata is ``onnx_metadata`` (``dcac_*`` keys)."""
    height, width = json.loads(onnx_metadata["dcac_input_size"])
    contents: dict[str, object] = {
        "schema_version": SIDECAR_SCHEMA_VERSION,
        "model_kwargs_schema_version": MODEL_KWARGS_SCHEMA_VERSION,
        "source": onnx_metadata["dcac_checkpoint"],
        **{key: _decoded(value) for key, value in onnx_metadata.items()},
    }
    if spec.format == "imagenet":
        contents["model_kwargs"] = {"img_size": [height, width]}
        contents["preprocess"] = "resize"
        contents["input_normalization"] = {
            "scale": "1/255",
            "channel_order": "RGB",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        }
    else:
        # BoxMOT raises "Invalid model metadata for FILE: Unknown model_kwargs in schema v1: [<this text>]".
        contents["model_kwargs"] = {refusal_message(spec): True}
    return contents


def _decoded(value: str) -> object:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def write_sidecar(onnx_path: str | Path, spec: InputSpec, onnx_metadata: dict[str, str]) -> Path:
    path = sidecar_path(onnx_path)
    write_json_atomic(path, sidecar_contents(spec, onnx_metadata))
    return path


def cosine_distance_threshold(threshold: float, metric: str) -> float:
    """``threshold`` on the run's distance between L2-normalised features → the same threshold as ``1 − cos``.

    ``euclidean`` is the squared distance ``2 − 2·cos``, so ``1 − cos`` is half of it; ``cosine`` is ``1 − cos``.
    """
    if metric == "euclidean":
        return threshold / 2.0
    if metric == "cosine":
        return threshold
    raise ValueError(f"metric: expected 'euclidean' or 'cosine', got {metric!r}")


def boxmot_threshold_line(record: dict[str, object]) -> str:
    """One line for ``dcac calibrate``: the calibrated threshold as BoxMOT's appearance gates take it."""
    distance = cosine_distance_threshold(float(record["threshold"]), str(record["metric"]))
    line = (
        f"in BoxMOT (cosine distance 1 - cos): appearance_thresh={distance:.4g} (BoT-SORT), "
        f"max_cos_dist={distance:.4g} (StrongSORT)"
    )
    if not record.get("after_bn", True) or record.get("flip_test", False):
        line += (
            "; calibrated on another feature than 'dcac export' writes: calibrate with eval.after_bn=true, no flip test"
        )
    return line
