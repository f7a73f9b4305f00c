"""Smaller and faster variants of an exported fp32 ONNX model: fp16 weights and activations, int8 weights.

- ``fp16``: ``onnxruntime.transformers.float16.convert_float_to_float16`` with the graph's input and output
  kept in their types (a uint8 or float32 input, float32 features), so callers do not change.  Meant for
  GPUs; on a CPU onnxruntime runs most fp16 ops by casting back to fp32, so it is not faster there.
- ``int8``: ``onnxruntime.quantization.quantize_dynamic`` — MatMul/Gemm weights stored as int8, activations
  quantized per batch at run time (no calibration data needed), the usual choice for transformers on CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

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
            quantize_dynamic(str(fp32_path), str(out_path), weight_type=QuantType.QInt8)
        finally:
            root.setLevel(previous)
    elif fp32_path != out_path:
        out_path.write_bytes(fp32_path.read_bytes())
    return out_path
