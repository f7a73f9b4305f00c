"""The FLOP counter used for MFU agrees with hand counts (2 FLOPs per multiply-add), and the peak table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from flops import count_flops, peak_tflops, train_step_flops, utilisation


def test_linear_layer_forward_and_backward():
    m, k, n = 5, 8, 16
    layer = torch.nn.Linear(k, n)
    x = torch.randn(m, k, requires_grad=True)
    forward, _ = count_flops(lambda: layer(x))
    assert forward == 2 * m * n * k
    stack = torch.nn.Sequential(layer, torch.nn.ReLU(), torch.nn.Linear(n, 3))
    total, by_module = count_flops(lambda: stack(x))
    assert by_module == {"0": 2 * m * n * k, "2": 2 * m * 3 * n} and total == sum(by_module.values())
    # Backward: one product for the input's gradient and one for the weight's, each 2mnk.
    total, _ = count_flops(lambda: layer(x).sum().backward())
    assert total == 3 * 2 * m * n * k


def test_one_transformer_block_by_hand():
    """Attention (through the math backend, on any device) plus the block's four projections and its MLP."""
    b, s, d, heads = 2, 7, 32, 4
    block = torch.nn.TransformerEncoderLayer(d, heads, dim_feedforward=4 * d, batch_first=True, dropout=0.0)
    x = torch.randn(b, s, d)
    with torch.no_grad():
        flops, _ = count_flops(lambda: block(x))
    projections = 2 * b * s * d * (3 * d) + 2 * b * s * d * d  # q, k, v and the output projection
    attention = 2 * (2 * b * s * s * d)  # q k^T and attn v over all heads
    mlp = 2 * (2 * b * s * d * 4 * d)
    assert flops == projections + attention + mlp


def test_scaled_dot_product_attention_is_counted_on_the_cpu():
    q = torch.randn(2, 3, 5, 8)
    flops, _ = count_flops(lambda: F.scaled_dot_product_attention(q, q, q))
    assert flops == 2 * (2 * 2 * 3 * 5 * 5 * 8)


@pytest.mark.parametrize(
    "name, peak",
    [
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA H200", 989.4),
        ("NVIDIA GH200 480GB", 989.4),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H100 NVL", 835.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A100 80GB PCIe", 312.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA GeForce RTX 4090", 165.2),
        ("NVIDIA A10G", None),  # not in the table rather than mistaken for an A10
        ("x86_64", None),
        (None, None),
    ],
)
def test_peak_by_device_name(name, peak):
    assert peak_tflops(name) == peak


def test_utilisation():
    got = utilisation(1000.0, 1e11, "NVIDIA H100 80GB HBM3")
    assert got["tflops_per_s"] == pytest.approx(100.0) and got["mfu"] == pytest.approx(100.0 / 989.4)
    assert utilisation(1000.0, 1e11, "x86_64")["mfu"] is None and utilisation(1000.0, 1e11, "x86_64")[
        "tflops_per_s"
    ] == pytest.approx(100.0)


def test_train_step_count_splits_into_the_model_parts_and_is_per_image():
    one = train_step_flops("demo", [], 16, "cpu", batch_size=4)
    two = train_step_flops("demo", [], 16, "cpu", batch_size=8)
    parts = one["forward_by_module_per_image"]
    assert {"reid", "teacher", "conditioner"} <= set(parts) and all(v > 0 for v in parts.values())
    assert sum(parts.values()) <= one["forward_per_image"] * (1 + 1e-9)
    # Backward: gradients of the activations everywhere and of the trainable weights, so 1-2x the forward.
    assert one["forward_per_image"] < one["backward_per_image"] < 2 * one["forward_per_image"]
    assert one["flops_per_image"] == one["forward_per_image"] + one["backward_per_image"]
    # Per image, the count does not depend on the batch, up to the small batch-coupled terms (memory logits).
    assert two["flops_per_image"] == pytest.approx(one["flops_per_image"], rel=0.02)
