"""Time the official DCAC code's training step (RikoLi/DCAC, ``engine/dcac_trainers.py::train_dcac_pcl``).

The official repository is not part of dcac: the user passes a clone (``--official DIR`` of train_step.py)
and this module imports its modules from there, builds its model with random weights and runs the body of
its training loop on synthetic batches already on the device:

* the CLIP ViT-B/16 image encoder with BNNeck and classifier (``model/clip_image_encoder.py``), built by the
  clone's own ``clip.build_model`` from a randomly initialised CLIP state dict instead of the downloaded one;
* the LDM UNet with loralib LoRA on its attention and feed-forward layers and the frozen VAE run at every
  step (``model/diffusion_wrapper.py``, ``model/stable_diffusion``), no pre-trained weights;
* the label-smoothed cross-entropy, the hard-update cluster memory and Adam with per-parameter groups
  (``losses``, ``engine/solvers/optimizers.py``);
* fp16 autocast with a gradient scaler, the per-step ``.item()`` reads of its loss meters and its
  ``torch.cuda.synchronize()``, as its loop does.

The configuration is the clone's own experiment file (``alchemycat_configs/single-source/ma_to_ms/cfg.py``
and the YAML files it lists), read with a small stand-in for ``alchemy_cat.dl_config.Config`` (attribute
access, missing keys falsy), so the ``alchemy_cat`` package is not needed.

Needs ``loralib`` and ``einops`` (pure-Python wheels; the clone's imports) — benchmark-only requirements, never
dcac dependencies. The clone's ``model/clip/clip.py`` (which imports torchvision) is never imported.

On a CPU (to prove the harness, not to measure the design) the clone's hard-coded ``.cuda()`` calls are
redirected to the CPU and autocast/grad scaling are off (fp32), with a warning from torch.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import yaml

EXPERIMENT = "alchemycat_configs/single-source/ma_to_ms/cfg.py"

#: Overrides of the tiny size (seconds on a CPU): a small LDM UNet and VAE at 64x64, 64x32 images.
TINY_OVERRIDES: dict[str, Any] = {
    "INPUT.SIZE_TRAIN": [64, 32],
    "SD.DDPM.IMAGE_SIZE": 64,
    "SD.UNET.MODEL_CHANNELS": 32,
    "SD.UNET.CHANNEL_MULT": [1, 2],
    "SD.UNET.ATTENTION_RESOLUTIONS": [2],
    "SD.UNET.NUM_RES_BLOCKS": 1,
    "SD.UNET.NUM_HEADS": 2,
    "SD.UNET.CONTEXT_DIM": 32,
    "SD.AUTOENCODER.CH": 32,
    "SD.AUTOENCODER.CH_MULT": [1, 2, 2],
    "SD.AUTOENCODER.NUM_RES_BLOCKS": 1,
    "SD.AUTOENCODER.RESOLUTION": 64,
}
#: CLIP constructor arguments: ViT-B/16 as released, and a 12-block ViT of width 64 for the tiny size (the
#: clone's ViT forward indexes blocks 0-10 and 11, so it needs 12).
CLIP_ARGS = {
    "full": {
        "embed_dim": 512,
        "vision_width": 768,
        "transformer_width": 512,
        "vocab_size": 49408,
        "context_length": 77,
        "transformer_layers": 12,
    },
    "tiny": {
        "embed_dim": 32,
        "vision_width": 64,
        "transformer_width": 64,
        "vocab_size": 64,
        "context_length": 8,
        "transformer_layers": 1,
    },
}


class ConfigNode(dict):
    """A nested dict with attribute access; a missing key reads as an empty (falsy) node, as in alchemy_cat."""

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        if key not in self:
            self[key] = ConfigNode()
        return self[key]

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    @classmethod
    def of(cls, value: Any) -> Any:
        return cls({k: cls.of(v) for k, v in value.items()}) if isinstance(value, dict) else value

    def merge(self, other: dict) -> None:
        for key, value in other.items():
            if isinstance(value, dict) and isinstance(self.get(key), ConfigNode):
                self[key].merge(value)
            else:
                self[key] = ConfigNode.of(value)


def load_official_config(official_dir: Path, overrides: dict[str, Any] | None = None) -> ConfigNode:
    """The clone's ma_to_ms experiment config (its YAML caps, then its cfg.py assignments), then ``overrides``."""
    official_dir = Path(official_dir)

    def config(caps: tuple[str, ...] = ()) -> ConfigNode:
        node = ConfigNode()
        for cap in caps:
            node.merge(yaml.safe_load((official_dir / cap).read_text()) or {})
        return node

    dl_config = types.ModuleType("alchemy_cat.dl_config")
    dl_config.Config = config
    namespace: dict[str, Any] = {}
    saved = {name: sys.modules.get(name) for name in ("alchemy_cat", "alchemy_cat.dl_config")}
    sys.modules.update({"alchemy_cat": types.ModuleType("alchemy_cat"), "alchemy_cat.dl_config": dl_config})
    try:
        exec(compile((official_dir / EXPERIMENT).read_text(), str(official_dir / EXPERIMENT), "exec"), namespace)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    cfg = namespace["cfg"]
    cfg.SD.UNET.PRETRAIN = ""  # random weights: nothing is downloaded or read
    for dotted, value in (overrides or {}).items():
        *path, last = dotted.split(".")
        node = cfg
        for key in path:
            node = getattr(node, key)
        node[last] = value
    return cfg


def import_official(official_dir: Path) -> None:
    """Put the clone on ``sys.path`` with its ``model.clip`` package opened without its ``clip.py``.

    ``model/clip/__init__.py`` star-imports ``clip.py`` (downloads, torchvision); the encoder only needs
    ``model/clip/model.py``, and ``load_clip_to_cpu`` is replaced by :func:`random_clip` before use.
    """
    root = str(Path(official_dir).resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    import model  # the clone's top-level package (its __init__ is empty)

    package = types.ModuleType("model.clip")
    package.__path__ = [str(Path(root) / "model" / "clip")]
    sys.modules["model.clip"] = package
    sys.modules["model.clip.clip"] = types.ModuleType("model.clip.clip")
    package.clip = sys.modules["model.clip.clip"]
    model.clip = package


def random_clip(size: str, h_resolution: int, w_resolution: int, stride: int):
    """The clone's ``clip.build_model`` applied to a randomly initialised CLIP state dict (224x224 grid, as released)."""
    from model.clip.model import CLIP, build_model

    args = CLIP_ARGS[size]
    source = CLIP(
        args["embed_dim"],
        224,
        12,
        args["vision_width"],
        16,
        16,
        args["context_length"],
        args["vocab_size"],
        args["transformer_width"],
        args["transformer_width"] // 64,
        args["transformer_layers"],
        14,
        14,
    )
    return build_model(source.state_dict(), h_resolution, w_resolution, stride)


@contextlib.contextmanager
def cuda_calls_on_cpu(enabled: bool):
    """Make ``Module.cuda()`` and ``Tensor.cuda()`` no-ops (the clone calls them unconditionally)."""
    import torch

    if not enabled:
        yield
        return
    saved = torch.nn.Module.cuda, torch.Tensor.cuda
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.nn.Module.cuda, torch.Tensor.cuda = saved


def official_commit(official_dir: Path) -> str | None:
    proc = subprocess.run(
        ["git", "-C", str(official_dir), "rev-parse", "HEAD"], check=False, capture_output=True, text=True
    )
    return proc.stdout.strip() or None


def build_official(official_dir: Path, size: str, num_ids: int, device):
    """The clone's DCAC model, Adam, cluster memory, label-smoothed CE and config, with random weights."""
    import torch
    import torch.nn.functional as F

    import_official(official_dir)
    cfg = load_official_config(official_dir, TINY_OVERRIDES if size == "tiny" else None)
    import model.clip_image_encoder as encoder_module
    from engine.solvers.optimizers import make_optimizer_dcac
    from losses.ce_loss import CrossEntropyLabelSmooth
    from losses.cm import ClusterMemoryAMP
    from model.diffusion_wrapper import DCAC

    encoder_module.load_clip_to_cpu = lambda name, h, w, stride: random_clip(
        "tiny" if size == "tiny" else "full", h, w, stride
    )
    with cuda_calls_on_cpu(device.type == "cpu"):
        encoder = encoder_module.make_single_grained_model(cfg, num_ids, 1, 1)
        model = DCAC(cfg, encoder)
    model.denoiser.device = device  # where it draws timesteps (the clone hard-codes "cuda")
    model.to(device)
    optimizer = make_optimizer_dcac(cfg, model, use_lora=cfg.SD.FINETUNE_MODE == "lora")
    memory = ClusterMemoryAMP(
        temp=cfg.PCL.MEMORY_TEMP, momentum=cfg.PCL.MEMORY_MOMENTUM, use_hard=cfg.PCL.HARD_MEMORY_UPDATE
    ).to(device)
    memory.features = F.normalize(torch.randn(num_ids, encoder.image_encoder.output_dim, device=device), dim=1)
    return cfg, model, optimizer, memory, CrossEntropyLabelSmooth(num_ids)


def official_step(cfg, model, optimizer, memory, xent, scaler, batch, device) -> dict[str, float]:
    """One iteration of the clone's ``train_dcac_pcl`` loop, from ``zero_grad`` to its meters and synchronize."""
    import torch
    from torch.cuda import amp

    img, img_vae, target = batch
    optimizer.zero_grad()
    with amp.autocast(device.type == "cuda"):
        fc_logit, proj_feat_bn, noise_loss = model(
            img,
            img_vae,
            prob_type=cfg.SD.UNET.PROB_TYPE,
            memory=memory,
            camid=None,
            labels=target,
            epoch=cfg.SD.DDPM.NOISE_ESTIMATE_BEGIN_EP,
        )
        losses = {
            "ldm": noise_loss * cfg.MODEL.DDPM_LOSS_WEIGHT,
            "ce": xent(fc_logit, target) * cfg.MODEL.ID_LOSS_WEIGHT,
            "pcl": memory(proj_feat_bn, target) * cfg.MODEL.PCL_LOSS_WEIGHT,
        }
        losses["total"] = sum(losses.values())
    scaler.scale(losses["total"]).backward()
    scaler.step(optimizer)
    scaler.update()
    # The loop's meters: each loss read back, and both accuracies computed, at every step.
    values = {k: v.item() for k, v in losses.items()}
    values["ce_acc"] = (fc_logit.max(1)[1] == target).float().mean().item()
    values["pcl_acc"] = ((proj_feat_bn @ memory.features.t()).max(1)[1] == target).float().mean().item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return values


def run_official(
    official_dir: Path,
    size: str,
    batch_size: int,
    num_ids: int,
    warmup: int,
    steps: int,
    device_arg: str | None,
    seed: int = 0,
) -> dict[str, Any]:
    """Build the clone's model and time its training step; the row train_step.py prints as ``official``."""
    import math

    import torch
    from common import environment, peak_memory, pick_device, reset_peak_memory, time_calls

    device = pick_device(device_arg)
    if device.type == "cuda" and device.index not in (None, torch.cuda.current_device()):
        raise SystemExit(
            "--official runs on the default CUDA device (the clone calls .cuda()); select it with CUDA_VISIBLE_DEVICES"
        )
    torch.manual_seed(seed)
    cfg, model, optimizer, memory, xent = build_official(official_dir, size, num_ids, device)
    model.train()
    scaler = torch.cuda.amp.GradScaler(enabled=device.type == "cuda")
    batches = _batches(cfg, batch_size, num_ids, device, seed)
    last: dict[str, float] = {}
    counter = iter(range(10**9))

    def step() -> None:
        nonlocal last
        with cuda_calls_on_cpu(device.type == "cpu"):
            last = official_step(cfg, model, optimizer, memory, xent, scaler, batches[next(counter) % 2], device)

    reset_peak_memory(device)
    timing = time_calls(step, warmup=warmup, repeats=steps, device=device, sync_each_call=False)
    if not all(math.isfinite(v) for v in last.values()):
        raise FloatingPointError(f"non-finite loss terms after the timed steps: {last}")
    return {
        **_description(cfg, model, batch_size, num_ids),
        "precision": "fp16" if device.type == "cuda" else "fp32",
        "images_per_s": batch_size * timing["repeats"] / timing["total_s"],
        "step_ms_mean": timing["mean_s"] * 1000,
        "warmup_steps": warmup,
        "warmup_s": timing["warmup_s"],
        "timed_steps": timing["repeats"],
        "last_losses": last,
        "official_dir": str(Path(official_dir).resolve()),
        "official_commit": official_commit(official_dir),
        **peak_memory(device),
        "environment": environment(device),
    }


def _batches(cfg, batch_size: int, num_ids: int, device, seed: int) -> list[tuple]:
    """Two synthetic P x K batches (image, 128x128 VAE view, labels) on the device, alternated by the steps."""
    import torch

    k = cfg.DATALOADER.NUM_INSTANCE
    height, width = cfg.INPUT.SIZE_TRAIN
    g = torch.Generator().manual_seed(seed + 1)
    batches = []
    for _ in range(2):
        ids = torch.randperm(num_ids, generator=g)[: batch_size // k].repeat_interleave(k)
        img = torch.randn(batch_size, 3, height, width, generator=g) * 0.5
        img_vae = torch.rand(batch_size, 3, cfg.SD.DDPM.IMAGE_SIZE, cfg.SD.DDPM.IMAGE_SIZE, generator=g) * 2 - 1
        batches.append((img.to(device), img_vae.to(device), ids.to(device)))
    return batches


def _description(cfg, model, batch_size: int, num_ids: int) -> dict[str, Any]:
    """The row's design columns (as train_step.py's variants have them) and sizes."""
    return {
        "name": "official",
        "status": "ok",
        "requested_precision": "fp16",
        "cache_latents": False,
        # The config sets USE_CHECKPOINT, but the clone's util.checkpoint always runs the function directly.
        "checkpointing": False,
        "unet_checkpoint_flag": bool(cfg.SD.UNET.USE_CHECKPOINT),
        "encoder_checkpointing": False,
        "frozen_in_autocast_dtype": False,
        "attention": "LDM einsum",
        "single_token": False,
        "fused_adam_used": False,
        "channels_last": False,
        "compiled": False,
        "read_every_step": True,
        "sizes": {
            "batch_size": batch_size,
            "num_ids": num_ids,
            "image_hw": list(cfg.INPUT.SIZE_TRAIN),
            "diffusion_view": cfg.SD.DDPM.IMAGE_SIZE,
            "lora_rank": cfg.SD.UNET.LORA_RANK,
            "unet_parameters": sum(p.numel() for p in model.denoiser.model.parameters()),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total_parameters": sum(p.numel() for p in model.parameters()),
        },
    }
