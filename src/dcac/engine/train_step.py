"""One optimisation step of DCAC, shared by the trainer and the training-speed benchmark."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from accelerate import Accelerator

from dcac.engine.latent_cache import LatentCache
from dcac.models.dcac import DCAC


def batch_latents(model: DCAC, batch: dict[str, Any], latent_cache: LatentCache | None, device: torch.device):
    """The scaled VAE latents of a batch: drawn from the cached posterior, or encoded now (reference path)."""
    if model.teacher is None:
        return None
    if latent_cache is not None:
        # Non-blocking: a blocking host-to-device copy would wait for every queued kernel.
        return latent_cache.sample(model.teacher, batch["index"].to(latent_cache.mean.device, non_blocking=True))
    if "diffusion_image" not in batch:
        raise ValueError("without a latent cache the batch must carry 'diffusion_image' (the 128x128 view)")
    mean, std = model.teacher.encode_posterior(batch["diffusion_image"].to(device, non_blocking=True))
    return model.teacher.sample_latents(mean, std)


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    accelerator: Accelerator,
    batch: dict[str, Any],
    latent_cache: LatentCache | None = None,
    scaler: torch.amp.GradScaler | None = None,
    *,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Forward, backward, Adam step, then the ID-memory update from the batch of every rank.

    ``model`` is what ``accelerator.prepare`` returned (possibly DDP-wrapped); returns the loss terms as
    detached 0-dim tensors on the device: reading a value makes the host wait for the GPU, so the caller
    converts them (:func:`step_values`) only when it logs. With a ``scaler`` (``train.compat=official``) the
    step runs the official code's fp16 autocast and loss scaling on any device: a step whose gradients
    overflow is skipped, the memory still moves. ``augment`` (``data.augment_on=device``) augments the batch's
    resized images on the device before the forward.
    """
    dcac_model: DCAC = accelerator.unwrap_model(model)
    device = accelerator.device
    images = batch["image"].to(device, non_blocking=True)
    if augment is not None:
        images = augment(images)
    labels = batch["pid"].to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=torch.float16) if scaler is not None else accelerator.autocast():
        latents = batch_latents(dcac_model, batch, latent_cache, device)
        out = model(images, labels, latents)
    if scaler is None:
        accelerator.backward(out.loss)
        optimizer.step()
    else:
        scaler.scale(out.loss).backward()
        scaler.step(optimizer)
        scaler.update()
    optimizer.zero_grad(set_to_none=True)
    # Every rank applies the same update from the gathered batch, so the memories stay identical.
    dcac_model.memory.update(accelerator.gather(out.embeddings), accelerator.gather(labels))
    return {**out.parts, "loss": out.loss.detach()}


def step_values(parts: dict[str, Any]) -> dict[str, float]:
    """The values of :func:`train_step`'s terms as Python floats, read from the device in one transfer.

    Each value equals ``float(v)``: float64 holds every float32/bfloat16/float16 value exactly.
    """
    tensors = {k: v.detach() for k, v in parts.items() if isinstance(v, torch.Tensor)}
    device = next(iter(tensors.values())).device if tensors else None
    read = torch.stack([v.to(device, torch.float64).reshape(()) for v in tensors.values()]).tolist() if tensors else []
    floats = dict(zip(tensors, read))
    return {k: floats[k] if k in floats else float(v) for k, v in parts.items()}
