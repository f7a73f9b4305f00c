"""The DCAC training loop, top to bottom (DESIGN §1.5).

    for each epoch:
        set the epoch's LR (warm-up, then x0.1 at the milestones) and seed every RNG from (seed, epoch)
        rebuild the ID memory from un-augmented features of the whole training set
        for each P x K batch:
            L = L_id + L_pcl + L_diff   (L_diff: UNet noise prediction conditioned on softmax(z / tau) P)
            Adam step; move each batch identity's memory row toward its hardest sample
        evaluate / checkpoint when due

Seeding every RNG from (seed, epoch) at the start of each epoch, and checkpointing at epoch ends, makes a
resumed run follow exactly the trajectory of an uninterrupted one.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import dcac
from dcac.config import DCACConfig, load_run_config
from dcac.data.image_dataset import ReIDImageDataset
from dcac.data.protocols import build_protocol
from dcac.data.image_io import verify_images
from dcac.data.sampler import PKBatchSampler
from dcac.data.transforms import build_diffusion_transform, build_train_transform
from dcac.engine.checkpoint import (
    REID_WEIGHTS,
    RUN_CONFIG,
    find_training_checkpoint,
    load_training_checkpoint,
    save_tensors_atomic,
    save_training_checkpoint,
    write_json_atomic,
)
from dcac.engine.evaluator import evaluate_on_target, format_metrics
from dcac.engine.distributed import DDP_KWARGS, extract_features_sharded, gather_shards, shard_bounds
from dcac.engine.latent_cache import LatentCache
from dcac.engine.optim import build_optimizer, set_epoch_lr
from dcac.engine.train_step import AUTOCAST_DTYPES, apply_speed_switches, compile_enabled, train_step
from dcac.engine.run_folder import write_run_metadata
from dcac.engine.run_logger import RunLogger
from dcac.inference.ranked_list import sample_ranked_queries
from dcac.inference.report import write_report
from dcac.models.build import build_dcac
from dcac.models.dcac import DCAC

_MIXED_PRECISION = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    is_main_process: bool = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def trainable_state(model: DCAC) -> dict[str, torch.Tensor]:
    """What a checkpoint must hold: all of the Re-ID side, and of the teacher only what training changes.

    The frozen VAE and the frozen base UNet are rebuilt from their weights on resume, so a checkpoint stays
    the size of the Re-ID model plus LoRA instead of gigabytes.
    """
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in model.state_dict().items() if not k.startswith("teacher.") or k in trainable}


def check_resumable(run_dir: Path, config: DCACConfig) -> None:
    """Refuse to resume a run folder that was trained with different settings (only ``train.*`` may change)."""
    saved = load_run_config(run_dir / RUN_CONFIG).to_dict()
    current = config.to_dict()
    saved.pop("train"), current.pop("train")
    if saved != current:
        diff = sorted(f"{s}.{k}" for s in saved for k in saved[s] if saved[s][k] != current[s][k])
        raise ValueError(
            f"{run_dir} holds a run with a different config ({', '.join(diff)}); "
            "choose another train.output_dir or pass --no-resume to start over"
        )


def train(config: DCACConfig, *, resume: bool = True, stop_after_epoch: int | None = None) -> TrainResult:
    """Train DCAC as configured; ``stop_after_epoch`` ends early (as an interruption would) after that many epochs."""
    cfg = config
    accelerator = Accelerator(
        mixed_precision=_MIXED_PRECISION[cfg.train.mixed_precision],
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=[DDP_KWARGS],
    )
    device, is_main = accelerator.device, accelerator.is_main_process
    run_dir = Path(cfg.train.output_dir)
    seed_everything(cfg.train.seed)

    # ---- data ---------------------------------------------------------------------------------------
    protocol = build_protocol(cfg.data.sources, cfg.data.targets, cfg.data.root, all_splits=cfg.data.all_splits, verbose=is_main)
    records = protocol.train.records
    if cfg.data.on_corrupt == "skip":
        records, skipped = verify_images(records, on_corrupt="skip")
        if skipped and is_main:
            print(f"skipped {skipped} unreadable training images")
    num_ids = protocol.train.num_ids
    sampler = PKBatchSampler(
        [r.pid for r in records],
        cfg.data.batch_size,
        cfg.data.num_instances,
        seed=cfg.train.seed,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
    )
    augment = build_train_transform(
        cfg.data.height, cfg.data.width, flip_p=cfg.data.flip_p, padding=cfg.data.padding, erasing_p=cfg.data.erasing_p
    )
    use_diffusion = cfg.conditioning.variant != "none"
    per_step_vae = use_diffusion and not cfg.diffusion.cache_latents
    train_set = ReIDImageDataset(
        records, augment, diffusion_transform=build_diffusion_transform(cfg.data.diffusion_size) if per_step_vae else None
    )

    # ---- model and optimiser --------------------------------------------------------------------------
    model = build_dcac(cfg, num_ids)
    apply_speed_switches(model, cfg.train, device)
    if is_main and compile_enabled(cfg.train, device):
        print("train.compile: the first steps compile the ViT and the UNet (about 3 minutes on an H100); "
              "train.compile=false runs eager", flush=True)
    optimizer = build_optimizer(model, cfg.optim, fused=device.type == "cuda")
    start_epoch, global_step = 0, 0
    checkpoint = find_training_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        check_resumable(run_dir, cfg)
        model_state, optimizer_state, trainer_state = load_training_checkpoint(checkpoint)
        missing, unexpected = model.load_state_dict(model_state, strict=False)
        needed = set(trainable_state(model))
        missing = [k for k in missing if k in needed]
        if missing or unexpected:
            raise ValueError(
                f"checkpoint {checkpoint} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        optimizer.load_state_dict(optimizer_state)
        start_epoch, global_step = int(trainer_state["epoch"]), int(trainer_state["global_step"])
        if is_main:
            print(f"resuming {run_dir} after epoch {start_epoch}")
    if cfg.train.sync_bn and accelerator.num_processes > 1:
        if device.type == "cpu":
            raise ValueError("train.sync_bn=true needs GPU processes: torch's SyncBatchNorm does not run on CPU")
        model.reid = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.reid)
    model, optimizer = accelerator.prepare(model, optimizer)
    dcac_model: DCAC = accelerator.unwrap_model(model)

    if is_main:
        write_run_metadata(
            run_dir,
            cfg,
            {
                "num_ids": num_ids,
                "num_cams": protocol.train.num_cams,
                "num_train_images": len(records),
                "sources": list(cfg.data.sources),
                "targets": list(cfg.data.targets),
                "dcac_version": dcac.__version__,
            },
        )
    logger = RunLogger(run_dir, enabled=is_main)

    latent_cache = None
    if use_diffusion and cfg.diffusion.cache_latents:
        # Each rank encodes its shard of the training set; the gathered cache is the same on every rank.
        start, stop = shard_bounds(len(records), accelerator.process_index, accelerator.num_processes)
        shard = LatentCache.build(
            dcac_model.teacher,
            records[start:stop],
            size=cfg.data.diffusion_size,
            batch_size=cfg.data.test_batch_size,
            num_workers=cfg.data.num_workers,
            device=device,
            progress=is_main and cfg.train.progress,
        )
        latent_cache = LatentCache(gather_shards(shard.mean, len(records)), gather_shards(shard.std, len(records)))
    labels_all = torch.tensor([r.pid for r in records], device=device)

    # ---- epochs ---------------------------------------------------------------------------------------
    metrics: dict[str, dict[str, Any]] = {}
    epochs_done = start_epoch
    for epoch in range(start_epoch, cfg.optim.epochs):
        # Per rank: the ranks' augmentation and diffusion noise/timesteps must be independent draws.
        seed_everything(epoch_seed(cfg.train.seed, epoch) + 1_000_003 * accelerator.process_index)
        sampler.set_epoch(epoch)
        lr_factor = set_epoch_lr(optimizer, epoch, cfg.optim)

        # The memory is rebuilt from un-augmented features of every training image (DESIGN §1.2).
        # Each rank extracts a shard; every rank gets all features, so the memories stay identical.
        feats = extract_features_sharded(
            dcac_model.reid,
            records,
            height=cfg.data.height,
            width=cfg.data.width,
            batch_size=cfg.data.test_batch_size,
            num_workers=cfg.data.num_workers,
            device=device,
            autocast_dtype=AUTOCAST_DTYPES[cfg.train.mixed_precision],
        )
        dcac_model.memory.rebuild(feats, labels_all)

        model.train()
        loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda")
        steps = len(sampler) if cfg.train.max_steps_per_epoch <= 0 else min(len(sampler), cfg.train.max_steps_per_epoch)
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", disable=None if is_main and cfg.train.progress else True, leave=False)
        started = time.perf_counter()
        parts: dict[str, float] = {}
        sums: dict[str, float] = {}  # of every step's terms, for the epoch means in the log
        for step, batch in enumerate(loader):
            if step >= steps:
                break
            parts = train_step(model, optimizer, accelerator, batch, cfg.loss, latent_cache)
            sums = {k: sums.get(k, 0.0) + v for k, v in parts.items()}
            global_step += 1
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items()})
            if global_step % cfg.train.log_every == 0 or step == steps - 1:
                logger.log({"epoch": epoch + 1, "step": global_step, "lr": cfg.optim.lr * lr_factor, **parts}, step=global_step)
        bar.close()
        epochs_done = epoch + 1
        if is_main:
            seconds = round(time.perf_counter() - started, 2)
            means = {k: v / steps for k, v in sums.items()}
            logger.log({"event": "epoch", "epoch": epochs_done, "seconds": seconds, "means": means})
            if cfg.train.progress:
                losses = " ".join(f"{k}={v:.3f}" for k, v in parts.items())
                print(f"epoch {epochs_done}/{cfg.optim.epochs} ({seconds:.1f} s, lr x{lr_factor:.3g}): {losses}", flush=True)

        last = epochs_done == cfg.optim.epochs
        if cfg.train.eval_every > 0 and epochs_done % cfg.train.eval_every == 0 or last:
            metrics = evaluate_targets(dcac_model, protocol.targets, cfg, device, is_main, logger, epochs_done)
        if is_main and (last or epochs_done % max(cfg.train.checkpoint_every, 1) == 0 or epochs_done == stop_after_epoch):
            save_tensors_atomic(dcac_model.reid.state_dict(), run_dir / REID_WEIGHTS)
            save_training_checkpoint(
                run_dir,
                trainable_state(dcac_model),
                optimizer.state_dict(),
                {"epoch": epochs_done, "global_step": global_step},
            )
        accelerator.wait_for_everyone()
        if stop_after_epoch is not None and epochs_done >= stop_after_epoch:
            break
    logger.close()
    return TrainResult(run_dir=run_dir, epochs_done=epochs_done, metrics=metrics, is_main_process=is_main)


def evaluate_targets(model: DCAC, targets, cfg: DCACConfig, device, is_main: bool, logger: RunLogger, epoch: int):
    """Evaluate on every target, record the numbers and rewrite the run's report (on the main process).

    Every rank takes part (each extracts a shard of the features); only the main process writes.
    """
    run_dir = Path(cfg.train.output_dir)
    metrics, ranked = {}, {}
    for name, target in targets.items():
        result = evaluate_on_target(model.reid, target, cfg, device=device)
        metrics[name] = result.metrics
        if not is_main:
            continue
        ranked[name] = sample_ranked_queries(result.query_feats, result.gallery_feats, target.query, target.gallery, seed=cfg.train.seed)
        print(f"epoch {epoch} " + format_metrics(name, metrics[name]))
        logger.log({"event": "eval", "epoch": epoch, "target": name, **{k: v for k, v in metrics[name].items() if k != "cmc"}})
    if is_main:
        write_json_atomic(run_dir / "metrics.json", {"epoch": epoch, "targets": metrics})
        write_report(run_dir, metrics, ranked_samples=ranked)
    return metrics
