"""ONNX export of the deployable part: Re-ID encoder + BNNeck → L2-normalised features, dynamic batch.

The graph takes ``pixel_values`` (``batch × 3 × H × W``, preprocessed as ``build_test_transform`` does:
bicubic resize to the run's H×W, ``(x/255 − 0.5) / 0.5``) and returns ``features`` (``batch × D``).  The
exported file records its input size, normalisation and feature choice in the model's metadata, and the
export is checked against PyTorch with onnxruntime before it is reported done (toolkits' ONNX exports are
known to break silently: torchreid #316, fast-reid #438).
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from dcac.inference.predictor import ReIDPredictor
from dcac.models.reid_model import ReIDModel

ONNX_OPSET = 18
INPUT_NAME = "pixel_values"
OUTPUT_NAME = "features"


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
    """The traced graph: ``ReIDModel.extract`` (no classifier, eval-mode BN)."""

    def __init__(self, model: ReIDModel, after_bn: bool) -> None:
        super().__init__()
        self.model = model
        self.after_bn = after_bn

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.extract(pixel_values, after_bn=self.after_bn)


def _add_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def onnx_features(path: str | Path, pixel_values: torch.Tensor) -> torch.Tensor:
    """Run an exported model with onnxruntime on the CPU."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (features,) = session.run([OUTPUT_NAME], {INPUT_NAME: pixel_values.cpu().numpy()})
    return torch.from_numpy(features)


def export_onnx(
    predictor: ReIDPredictor,
    out_path: str | Path,
    *,
    after_bn: bool = True,
    verify: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Write the feature extractor of ``predictor`` as ONNX; with ``verify``, compare onnxruntime to PyTorch."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # A CPU copy: exporting must not move the predictor's own model off its device.
    module = FeatureExtractorModule(copy.deepcopy(predictor.model).cpu(), after_bn).eval()
    height, width = predictor.image_size
    # Two different images: a batch of one could let the exporter specialise the batch axis away.
    example = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), _quiet_exporter():
        torch.onnx.export(
            module,
            (example,),
            str(out_path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch")}},
            opset_version=ONNX_OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    transform = predictor.transform
    _add_metadata(
        out_path,
        {
            "dcac_input_size": json.dumps([height, width]),
            "dcac_normalization": json.dumps({"mean": list(transform.mean), "std": list(transform.std), "resize": "bicubic"}),
            "dcac_feature": "f_bn" if after_bn else "f",
            "dcac_checkpoint": predictor.source,
        },
    )
    if verify:
        check = torch.randn(3, 3, height, width, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = module(check)
        got = onnx_features(out_path, check)
        error = (got - expected).abs().max().item()
        if error > atol:
            raise ExportMismatchError(f"{out_path}: onnxruntime features differ from PyTorch by {error:.3g} (> {atol})")
    return out_path
