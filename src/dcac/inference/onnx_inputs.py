"""What an exported ONNX graph takes as input, and the layers that turn it into the model's input.

- ``pixel_values``: ``N×3×H×W`` float at the run's size, already resized (bicubic) and normalised with the
  run's mean/std — dcac's own preprocessing, done by the caller.
- ``raw``: the crops themselves, ``uint8``, ``N×H×W×3`` (``nhwc``) or ``N×3×H×W`` (``nchw``), any H×W,
  RGB or BGR; the graph converts, resizes and normalises, so a runtime needs to know nothing about dcac.
- ``imagenet`` (the default): ``N×3×H×W`` float RGB normalised with ImageNet's mean/std, any H×W — what
  trackers built on torchreid-style backends feed (BoxMOT resizes crops bilinear to the size its sidecar
  names and normalises this way); the graph undoes that normalisation, resizes to the run's size and applies
  dcac's.

Resizing in the graph is bicubic with antialiasing (``F.interpolate(..., antialias=True)``, ONNX ``Resize``
with ``cubic_coeff_a=-0.5``), the filter PIL's ``BICUBIC`` uses in ``build_test_transform``; the graph keeps
the resized values in float where PIL rounds them to uint8, so features differ very slightly from
``ReIDPredictor.extract`` on the same crops (benchmarks/onnx_variants.py measures it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

INPUT_FORMATS = ("pixel_values", "raw", "imagenet")
LAYOUTS = ("nhwc", "nchw")
CHANNEL_ORDERS = ("rgb", "bgr")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: How the graph resizes, per the run's test resize (bilinear: the official code's single-source evaluation).
RESIZE_DESCRIPTIONS = {
    "bicubic": "bicubic, antialiased (PIL BICUBIC filter, a=-0.5), align_corners=False",
    "bilinear": "bilinear, antialiased (PIL BILINEAR filter), align_corners=False",
}


@dataclass(frozen=True)
class InputSpec:
    """The input contract of an exported graph; ``metadata()`` is what the ONNX file records."""

    # The tracker-facing graph is the default: fed the way trackers feed crops, it gives dcac's features.
    format: str = "imagenet"
    layout: str = "nchw"
    channel_order: str = "rgb"

    def __post_init__(self) -> None:
        for name, allowed in (("format", INPUT_FORMATS), ("layout", LAYOUTS), ("channel_order", CHANNEL_ORDERS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ONNX input {name}: expected one of {allowed}, got {getattr(self, name)!r}")
        if self.format != "raw" and (self.layout, self.channel_order) != ("nchw", "rgb"):
            raise ValueError(
                f"ONNX input {self.format!r} is always N×3×H×W RGB; layout/channel order apply to 'raw' only"
            )

    @property
    def name(self) -> str:
        return {"pixel_values": "pixel_values", "raw": "images", "imagenet": "crops"}[self.format]

    @property
    def shape_text(self) -> str:
        if self.format == "raw" and self.layout == "nhwc":
            return "batch x height x width x 3"
        return "batch x 3 x height x width"

    def metadata(self, height: int, width: int) -> dict[str, object]:
        return {
            "format": self.format,
            "name": self.name,
            "shape": self.shape_text,
            "dtype": "uint8" if self.format == "raw" else "float32",
            "channel_order": self.channel_order.upper(),
            "any_size": self.format != "pixel_values",
            "value_range": {
                "raw": "0..255",
                "imagenet": "(x/255 - imagenet_mean) / imagenet_std",
                "pixel_values": "(x/255 - mean) / std",
            }[self.format],
            "resized_to": [height, width],
        }

    def dynamic_axes(self) -> dict[int, torch.export.Dim]:
        axes = {0: torch.export.Dim("batch")}
        if self.format != "pixel_values":
            spatial = (1, 2) if self.layout == "nhwc" else (2, 3)
            axes[spatial[0]] = torch.export.Dim("height", min=2, max=4096)
            axes[spatial[1]] = torch.export.Dim("width", min=2, max=4096)
        return axes

    def example(self, batch: int, height: int, width: int, seed: int) -> torch.Tensor:
        """An input of this format; raw/imagenet ones are of another size than the model's, so the
        exporter keeps the resize (and its dynamic size) in the graph."""
        generator = torch.Generator().manual_seed(seed)
        if self.format == "pixel_values":
            return torch.randn(batch, 3, height, width, generator=generator)
        h, w = 2 * height + 3, width + 5
        pixels = torch.randint(0, 256, (batch, 3, h, w), generator=generator, dtype=torch.uint8)
        if self.format == "imagenet":
            return (pixels.float() / 255 - _channels(IMAGENET_MEAN)) / _channels(IMAGENET_STD)
        return pixels.permute(0, 2, 3, 1).contiguous() if self.layout == "nhwc" else pixels


def _channels(values: Sequence[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1)


class ToModelInput(nn.Module):
    """Input of ``spec`` → the model's ``pixel_values`` (``(x/255 − mean)/std`` at ``height × width``)."""

    def __init__(
        self,
        spec: InputSpec,
        height: int,
        width: int,
        mean: Sequence[float],
        std: Sequence[float],
        interpolation: str = "bicubic",
    ) -> None:
        super().__init__()
        if interpolation not in RESIZE_DESCRIPTIONS:
            raise ValueError(f"interpolation must be one of {tuple(RESIZE_DESCRIPTIONS)}, got {interpolation!r}")
        self.spec, self.size, self.interpolation = spec, (height, width), interpolation
        self.register_buffer("mean", _channels(mean), persistent=False)
        self.register_buffer("std", _channels(std), persistent=False)
        self.register_buffer("imagenet_mean", _channels(IMAGENET_MEAN), persistent=False)
        self.register_buffer("imagenet_std", _channels(IMAGENET_STD), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.format == "pixel_values":
            return x
        if self.spec.format == "raw":
            x = x.permute(0, 3, 1, 2) if self.spec.layout == "nhwc" else x
            x = x.float() / 255.0
            x = x.flip(1) if self.spec.channel_order == "bgr" else x
        else:
            x = x * self.imagenet_std + self.imagenet_mean
        x = F.interpolate(x, size=self.size, mode=self.interpolation, align_corners=False, antialias=True)
        # PIL clips the cubic filter's overshoot when it stores the resized image as uint8.
        x = x.clamp(0.0, 1.0)
        return (x - self.mean) / self.std
