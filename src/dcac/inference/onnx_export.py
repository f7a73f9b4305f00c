"""ONNX export of the deployable part: Re-ID encoder + BNNeck → L2-normalised features, dynamic batch.

By default (``InputSpec()``, ``format="imagenet"``) the graph takes crops as trackers feed them: float
``batch × 3 × H × W``, any H×W, ``(rgb/255 − ImageNet mean) / ImageNet std``; it resizes them to the run's
size and applies the run's normalisation itself, and returns ``features`` (``batch × D``). Opt-in:
``format="raw"`` (uint8 crops of any size) and ``format="pixel_values"`` (crops already preprocessed as
``build_test_transform`` does: bicubic resize to the run's H×W, ``(x/255 − 0.5) / 0.5``); see ``onnx_inputs``.
Every export also writes BoxMOT's ``<file>.metadata.json`` sidecar, which refuses the opt-in graphs to a
tracker (``tracker_export``).
``precision`` ``fp16``/``int8`` writes a converted variant (``convert_precision``).

The file records its input contract, size, normalisation, interpolation, feature choice and dimension in
the model's metadata (``dcac_*`` keys), and the export is checked against PyTorch with onnxruntime before
it is reported done (toolkits' ONNX exports are known to break silently: torchreid #316, fast-reid #438).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from dcac.inference.onnx_inputs import RESIZE_DESCRIPTIONS, InputSpec, ToModelInput
from dcac.inference.predictor import ReIDPredictor
from dcac.inference.tracker_export import write_sidecar
from dcac.models.reid_model import ReIDModel
from dcac.storage.disk_space import fsync_file, reported_when_full
from dcac.storage.tensor_checks import require_finite

ONNX_OPSET = 18
OUTPUT_NAME = "features"
# The least cosine similarity to PyTorch's fp32 features a converted variant must keep to be written.
MIN_COSINE = {"fp16": 0.999, "int8": 0.98}


# The exporter's op registry logs a warning for each torchvision op it skips; dcac never uses torchvision.
_REGISTRY_LOGGER = "torch.onnx._internal.exporter._registration"


@contextmanager
def _quiet_exporter():
    logger = logging.getLogger(_REGISTRY_LOGGER)
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # torch.export's pytree module warns about its own deprecated internals; nothing a user can act on.
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(previous)


class ExportMismatchError(RuntimeError):
    """onnxruntime and PyTorch disagree on the exported model's features."""


class FeatureExtractorModule(nn.Module):
    """The traced graph: the input adapter, then ``ReIDModel.extract`` (no classifier, eval-mode BN)."""

    def __init__(self, model: ReIDModel, after_bn: bool, to_model_input: nn.Module | None = None) -> None:
        super().__init__()
        self.to_model_input = to_model_input if to_model_input is not None else nn.Identity()
        self.model = model
        self.after_bn = after_bn

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model.extract(self.to_model_input(inputs), after_bn=self.after_bn)


def _add_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``dcac_*`` metadata of an exported file (what a runtime needs to feed it)."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def onnx_features(path: str | Path, inputs: torch.Tensor) -> torch.Tensor:
    """Run an exported model with onnxruntime on the CPU (whatever its input format)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (features,) = session.run([OUTPUT_NAME], {session.get_inputs()[0].name: inputs.cpu().numpy()})
    return torch.from_numpy(features).float()


def build_export_module(predictor: ReIDPredictor, after_bn: bool, spec: InputSpec) -> FeatureExtractorModule:
    """A CPU copy of the graph to export: exporting must not move the predictor's own model off its device."""
    transform = predictor.transform
    height, width = predictor.image_size
    adapter = ToModelInput(spec, height, width, transform.mean, transform.std, transform.interpolation)
    return FeatureExtractorModule(copy.deepcopy(predictor.model).cpu(), after_bn, adapter).eval()


def _export_fp32(module: FeatureExtractorModule, spec: InputSpec, height: int, width: int, path: Path) -> None:
    # Two different inputs: a batch of one could let the exporter specialise the batch axis away.
    example = spec.example(2, height, width, seed=0)
    with torch.no_grad(), _quiet_exporter():
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[spec.name],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"inputs": spec.dynamic_axes()},
            opset_version=ONNX_OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def compare_with_pytorch(path: str | Path, module: FeatureExtractorModule, inputs: torch.Tensor) -> tuple[float, float]:
    """``(max |onnx − torch|, min cosine(onnx, torch))`` of the features of ``inputs``."""
    with torch.no_grad():
        expected = module(inputs)
    got = onnx_features(path, inputs)
    cosine = torch.nn.functional.cosine_similarity(got, expected, dim=1)
    return (got - expected).abs().max().item(), cosine.min().item()


def _metadata(predictor: ReIDPredictor, spec: InputSpec, after_bn: bool, precision: str) -> dict[str, str]:
    transform = predictor.transform
    height, width = predictor.image_size
    return {
        "dcac_input": json.dumps(spec.metadata(height, width)),
        "dcac_input_size": json.dumps([height, width]),
        "dcac_normalization": json.dumps(
            {"mean": list(transform.mean), "std": list(transform.std), "resize": transform.interpolation}
        ),
        "dcac_interpolation": RESIZE_DESCRIPTIONS[transform.interpolation],
        "dcac_feature": "f_bn" if after_bn else "f",
        "dcac_feature_dim": str(predictor.feat_dim),
        "dcac_output": f"{OUTPUT_NAME}: batch x {predictor.feat_dim} float32, L2-normalised",
        "dcac_precision": precision,
        "dcac_checkpoint": predictor.source,
    }


def export_onnx(
    predictor: ReIDPredictor,
    out_path: str | Path,
    *,
    after_bn: bool = True,
    verify: bool = True,
    atol: float = 1e-4,
    input_spec: InputSpec = InputSpec(),
    precision: str = "fp32",
) -> Path:
    """Write the feature extractor of ``predictor`` as ONNX, and BoxMOT's sidecar next to it (``tracker_export``);
    with ``verify``, compare onnxruntime to PyTorch (fp32: every feature within ``atol``; fp16/int8: cosine at
    least ``MIN_COSINE``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    module = build_export_module(predictor, after_bn, input_spec)
    # NaN/inf weights would pass a comparison of NaN with NaN (and break int8 quantization): refused by name.
    require_finite(module.state_dict(), predictor.source or "the model to export")
    height, width = predictor.image_size
    # Written next to the output and renamed at the end, so a failed export never leaves a half file.
    fp32_tmp, final_tmp = out_path.with_name(f".{out_path.name}.fp32.tmp"), out_path.with_name(f".{out_path.name}.tmp")
    # The fp32 graph and the final file are both on disk before the rename, each about the weights' size.
    needed = 2 * sum(t.numel() * t.element_size() for t in module.state_dict().values())
    try:
        with reported_when_full(out_path, needed, (fp32_tmp, final_tmp)):
            _export_fp32(module, input_spec, height, width, fp32_tmp)
            convert_precision(fp32_tmp, final_tmp, precision)
            metadata = _metadata(predictor, input_spec, after_bn, precision)
            _add_metadata(final_tmp, metadata)
            fsync_file(final_tmp)
        if verify:
            max_error, min_cosine = compare_with_pytorch(
                final_tmp, module, input_spec.example(3, height, width, seed=1)
            )
            if not (math.isfinite(max_error) and math.isfinite(min_cosine)):
                raise ExportMismatchError(
                    f"{out_path}: the features hold NaN/inf values (an overflow in the model?): nothing was written"
                )
            if precision == "fp32" and max_error > atol:
                raise ExportMismatchError(
                    f"{out_path}: onnxruntime features differ from PyTorch by {max_error:.3g} (> {atol})"
                )
            if precision != "fp32" and min_cosine < MIN_COSINE[precision]:
                raise ExportMismatchError(
                    f"{out_path}: {precision} features have cosine {min_cosine:.4f} to PyTorch's (< {MIN_COSINE[precision]})"
                )
        os.replace(final_tmp, out_path)
        write_sidecar(out_path, input_spec, metadata)
    finally:
        for leftover in (fp32_tmp, final_tmp):
            leftover.unlink(missing_ok=True)
    return out_path


# Smaller and faster variants of an exported fp32 model. fp16: onnxruntime's float16 converter with the graph's
# input and output kept in their types (callers do not change), meant for GPUs (a CPU runs most fp16 ops through
# fp32 casts). int8: dynamic quantization (MatMul/Gemm weights int8, activations quantized per batch, no
# calibration data), the usual choice for transformers on a CPU.
PRECISIONS = ("fp32", "fp16", "int8")


def convert_precision(fp32_path: str | Path, out_path: str | Path, precision: str) -> Path:
    """Write the ``precision`` variant of the fp32 model at ``fp32_path`` to ``out_path``."""
    import onnx

    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        # Resize's scales/sizes inputs must stay fp32/int64; keeping the op in fp32 costs little.
        converted = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True, op_block_list=["Resize"])
        onnx.save(converted, str(out_path))
    elif precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        root = logging.getLogger()
        previous = root.level
        # The quantizer logs a warning for every non-float tensor (a uint8 input): nothing is wrong.
        root.setLevel(logging.ERROR)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                quantize_dynamic(_without_value_info(fp32_path, Path(tmp)), str(out_path), weight_type=QuantType.QInt8)
        finally:
            root.setLevel(previous)
    elif fp32_path != out_path:
        out_path.write_bytes(fp32_path.read_bytes())
    return out_path


def _without_value_info(path: Path, folder: Path) -> str:
    """A copy of the model without the exporter's intermediate shape annotations: the quantizer of
    onnxruntime 1.24 (the version BoxMOT pins) rejects some of them in its shape inference, and infers all."""
    import onnx

    model = onnx.load(str(path))
    del model.graph.value_info[:]
    copy_path = folder / path.name
    onnx.save(model, str(copy_path))
    return str(copy_path)
