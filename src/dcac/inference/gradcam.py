"""Grad-CAM activation maps of the Re-ID encoder: where in a person crop the feature comes from.

The class token leaves the last transformer block, so the last block's *output* patch tokens never reach
the feature (their gradient is zero).  The map is therefore taken on the patch tokens the last block's
attention reads — the output of its first LayerNorm, the usual Grad-CAM layer for ViTs.  For each image:

- score: the top logit of the ID classifier when the model has one (``target="auto"`` or ``"logit"``),
  otherwise the norm of the feature before L2 normalisation (``"norm"``: of ``f_bn``, the test feature);
- channel weights: the gradient of the score w.r.t. the tokens, averaged over the patch tokens;
- map: ReLU of the weighted channel sum per token, reshaped to the (H/16)×(W/16) token grid, scaled to
  [0, 1], upsampled bilinearly to the image and overlaid with a jet colormap.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dcac.inference.image_inputs import load_rgb
from dcac.inference.predictor import ReIDPredictor
from dcac.models.reid_model import ReIDModel

logger = logging.getLogger(__name__)

CamTarget = Literal["auto", "logit", "norm"]


def _score(model: ReIDModel, pixel_values: torch.Tensor, target: CamTarget) -> torch.Tensor:
    out = model(pixel_values)
    use_logit = target == "logit" or (target == "auto" and out.logits is not None)
    if use_logit:
        if out.logits is None:
            raise ValueError("target='logit' needs a model with an ID classifier (this run has num_ids=0)")
        return out.logits.max(dim=1).values
    return out.feat_bn.norm(dim=1)


def grad_cam(model: ReIDModel, pixel_values: torch.Tensor, target: CamTarget = "auto") -> torch.Tensor:
    """Grad-CAM maps on the token grid, ``B × rows × cols``, each scaled to [0, 1] (all zeros if flat)."""
    if target not in ("auto", "logit", "norm"):
        raise ValueError(f"target must be 'auto', 'logit' or 'norm', got {target!r}")
    was_training = model.training
    model.eval()
    captured: list[torch.Tensor] = []
    hook = model.encoder.encoder.layers[-1].layer_norm1.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.enable_grad():
            # The input needs a gradient so the graph exists even when every encoder weight is frozen.
            pixel_values = pixel_values.detach().clone().requires_grad_(True)
            score = _score(model, pixel_values, target)
            tokens = captured[-1]
            (grads,) = torch.autograd.grad(score.sum(), tokens)
    finally:
        hook.remove()
        model.train(was_training)
    patch_tokens, patch_grads = tokens[:, 1:].detach(), grads[:, 1:]
    weights = patch_grads.mean(dim=1, keepdim=True)
    cam = F.relu((weights * patch_tokens).sum(dim=2))
    rows, cols = model.config.grid_size
    cam = cam.reshape(-1, rows, cols)
    low = cam.flatten(1).min(dim=1).values.view(-1, 1, 1)
    span = cam.flatten(1).max(dim=1).values.view(-1, 1, 1) - low
    return torch.where(span > 0, (cam - low) / span.clamp_min(1e-12), torch.zeros_like(cam))


def jet_colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB uint8 with MATLAB's jet (blue → cyan → yellow → red)."""
    x = np.clip(values, 0.0, 1.0)[..., None]
    rgb = np.clip(1.5 - np.abs(4.0 * x - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)
    return (rgb * 255).round().astype(np.uint8)


def overlay_heatmap(image: Image.Image, cam: torch.Tensor, alpha: float = 0.5) -> Image.Image:
    """Upsample a token-grid map to the image size and blend its jet colouring over the image."""
    heat = F.interpolate(
        cam[None, None].float(), size=(image.height, image.width), mode="bilinear", align_corners=False
    )
    colours = Image.fromarray(jet_colormap(heat[0, 0].numpy()), mode="RGB")
    return Image.blend(image.convert("RGB"), colours, alpha)


def explain_images(
    predictor: ReIDPredictor,
    images: Sequence[str | Path],
    out_dir: str | Path,
    *,
    target: CamTarget = "auto",
    alpha: float = 0.5,
    batch_size: int = 16,
) -> list[Path]:
    """Write ``<stem>_cam.png`` (the overlay, at the image's own size) for every image; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    used_names: set[str] = set()
    for start in range(0, len(images), batch_size):
        batch = [Path(p) for p in images[start : start + batch_size]]
        pictures = [load_rgb(p) for p in batch]
        pixel_values = torch.stack([predictor.transform(pic) for pic in pictures]).to(predictor.device)
        cams = grad_cam(predictor.model, pixel_values, target).cpu()
        for path, picture, cam in zip(batch, pictures, cams):
            name = f"{path.stem}_cam.png"
            # Two inputs with the same stem (from different folders) must not overwrite each other.
            suffix = 1
            while name in used_names:
                name, suffix = f"{path.stem}_{suffix}_cam.png", suffix + 1
            used_names.add(name)
            out_path = out_dir / name
            if not bool(cam.any()):
                logger.warning(
                    "%s: the activation map is zero everywhere (no patch raises the %s score); "
                    "%s shows no localisation",
                    path,
                    target,
                    out_path.name,
                )
            overlay_heatmap(picture, cam, alpha).save(out_path)
            written.append(out_path)
    return written
