"""Model FLOPs per image and model-FLOPs utilisation (MFU): what fraction of the device's peak a step uses.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and convolutions: 2 FLOPs
per multiply-add; elementwise work is not counted, as in the usual MFU definition). Attention is counted
through PyTorch's math backend, whose matrix products the counter sees on every device (the CPU's fused
attention kernel is not in its table), so a count does not depend on the host it was made on.

"Model FLOPs" are the FLOPs the mathematics needs: a training step is counted without activation
checkpointing (which recomputes the forward) and with the latents drawn from the cached posterior (the VAE
encoder run at every step recomputes a constant). MFU = images/s x model FLOPs per image / peak, so two rows
of the same model compare exactly as their images/s do, whatever work each actually executes.

Peaks are dense bfloat16 tensor-core FLOP/s (no sparsity) from the vendors' data sheets; a device missing from
the table gets no MFU.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

#: (pattern on torch.cuda.get_device_name, dense bf16 TFLOP/s); the first match wins.
PEAK_BF16_DENSE_TFLOPS: tuple[tuple[str, float], ...] = (
    (r"\bB200\b", 2250.0),
    (r"\bH100\b.*\bPCIe\b", 756.0),
    (r"\bH[12]00\b.*\bNVL\b", 835.0),
    (r"\bG?H[12]00\b", 989.4),  # H100 SXM, H200 SXM, GH200
    (r"\bA100\b", 312.0),
    (r"\bL40S\b", 362.0),
    (r"\bL4\b", 121.0),
    (r"\bA10\b", 125.0),
    (r"\bRTX 4090\b", 165.2),
)


def peak_tflops(device_name: str | None) -> float | None:
    """Dense bf16 peak TFLOP/s of a device by its name, or None when it is not in the table."""
    for pattern, tflops in PEAK_BF16_DENSE_TFLOPS:
        if device_name and re.search(pattern, device_name, flags=re.IGNORECASE):
            return tflops
    return None


def count_flops(fn: Callable[[], Any]) -> tuple[int, dict[str, int]]:
    """FLOPs of running ``fn`` once, in total and per submodule of the root module that ran.

    The breakdown maps each direct child of the root (``reid``, ``teacher``, ...) to the FLOPs of its
    shallowest submodules that ran (``teacher.unet`` when ``teacher`` itself is not called); work outside
    any module (a loss on the outputs) is in the total only. Use it for forward passes: the counter's
    attribution of backward work to modules can overlap.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, depth=3)
    with sdpa_kernel(SDPBackend.MATH), counter:
        fn()
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items() if name != "Global"}
    by_module: dict[str, int] = {}
    for name, flops in counts.items():
        parts = name.split(".")
        # Count a module only where no ancestor below the root was counted (nested counts would add up twice).
        if len(parts) >= 2 and not any(".".join(parts[:i]) in counts for i in range(2, len(parts))):
            by_module[parts[1]] = by_module.get(parts[1], 0) + flops
    return counter.get_total_flops(), by_module


def utilisation(images_per_s: float | None, flops_per_image: float | None, device_name: str | None) -> dict[str, Any]:
    """``tflops_per_s`` (model FLOPs actually delivered) and ``mfu`` (None without a known peak)."""
    if not images_per_s or not flops_per_image:
        return {"tflops_per_s": None, "mfu": None, "peak_tflops": peak_tflops(device_name)}
    tflops = images_per_s * flops_per_image / 1e12
    peak = peak_tflops(device_name)
    return {"tflops_per_s": tflops, "mfu": tflops / peak if peak else None, "peak_tflops": peak}


def train_step_flops(preset: str, overrides: list[str], num_ids: int, device, batch_size: int) -> dict[str, Any]:
    """Model FLOPs of one training step (forward and backward) of the DCAC of a config preset, per image.

    The model is built without activation checkpointing and uncompiled (the mathematics, not how it runs);
    latents are sampled from the posterior of random views outside the count, as the latent cache does.
    Adam and the memory update are elementwise and not counted.
    """
    import torch

    from dcac.config import load_config
    from dcac.models.build import build_dcac

    no_recompute = [
        "encoder.gradient_checkpointing=false",
        "diffusion.gradient_checkpointing=false",
        "train.compile=false",
    ]
    config = load_config(preset, [*overrides, *no_recompute])
    torch.manual_seed(0)
    with torch.device(device):
        model = build_dcac(config, num_ids).train()
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, config.data.height, config.data.width, generator=g).to(device)
    labels = torch.arange(batch_size, device=device) % num_ids
    latents = None
    if model.teacher is not None:
        views = (
            torch.rand(batch_size, 3, config.data.diffusion_size, config.data.diffusion_size, generator=g) * 2 - 1
        ).to(device)
        with torch.no_grad():
            latents = model.teacher.sample_latents(*model.teacher.encode_posterior(views))
    out = {}
    forward, by_module = count_flops(lambda: out.setdefault("loss", model(images, labels, latents).loss))
    backward, _ = count_flops(lambda: out["loss"].backward())
    return {
        "flops_per_image": (forward + backward) / batch_size,
        "forward_per_image": forward / batch_size,
        "backward_per_image": backward / batch_size,
        "forward_by_module_per_image": {k: v / batch_size for k, v in by_module.items()},
        "counted_at_batch": batch_size,
        "counted_on": str(device),
    }


def extraction_flops(model, images) -> float:
    """FLOPs per image of ``model.extract(images)`` in eval mode without gradients (what extraction runs)."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            total, _ = count_flops(lambda: model.extract(images))
    finally:
        model.train(was_training)
    return total / images.shape[0]
