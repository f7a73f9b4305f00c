"""The DCAC training loop, top to bottom (docs/method.md §5).

    for each epoch:
        set the epoch's LR (warm-up, then x0.1 at the milestones) and seed every RNG from (seed, epoch)
        rebuild the ID memory from un-augmented features of the whole training set
        for each P x K batch:
            L = L_id + L_pcl + L_diff   (L_diff: UNet noise prediction conditioned on softmax(z / tau) P)
            Adam step; move each batch identity's memory row toward its hardest sample
        save the model and the checkpoint when due, then evaluate when due

Seeding every RNG from (seed, epoch) at the start of each epoch, and checkpointing at epoch ends, makes a
resumed run follow exactly the trajectory of an uninterrupted one (``dcac.engine.resume``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import dcac
from dcac.config import DCACConfig
from dcac.config.compat import is_official
from dcac.data.batch_augment import BatchTrainAugment
from dcac.data.image_dataset import ReIDImageDataset
from dcac.data.protocols import build_protocol
from dcac.data.records import ImageRecord, ReIDDataset
from dcac.data.sampler import PKBatchSampler
from dcac.data.target_check import checked_target
from dcac.data.transforms import ResizeTransform, TrainTransform, build_diffusion_transform, build_train_transform
from dcac.data.unreadable import drop_unreadable_training_images
from dcac.engine.latent_cache import LatentCache
from dcac.engine.optim import set_epoch_lr
from dcac.engine.resume import epoch_seed, resume_from_checkpoint, seed_everything, trainable_state
from dcac.engine.run_claim import claim_training_folder
from dcac.engine.run_logger import RunLogger, drop_log_entries_after
from dcac.engine.train_step import step_values, train_step
from dcac.engine.training_setup import (
    AUTOCAST_DTYPES,
    build_model_and_optimizer,
    compile_enabled,
    make_accelerator,
    prepare_for_training,
)
from dcac.evaluation.distributed import extract_features_sharded, gather_shards, shard_bounds
from dcac.evaluation.targets import TargetEvaluation, evaluate_on_target, format_metrics
from dcac.models.dcac import DCAC
from dcac.storage.checkpoint import save_tensors_atomic, save_training_checkpoint, write_json_atomic
from dcac.storage.run_folder import LOG, METRICS, REID_WEIGHTS, write_run_metadata
from dcac.storage.run_lock import RunLock

#: ``(run_dir, metrics per target, (target, TargetEvaluation) per target, config)``, called after an evaluation.
EvaluationCallback = Callable[
    [Path, dict[str, dict[str, Any]], dict[str, tuple[ReIDDataset, TargetEvaluation]], DCACConfig], None
]


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    is_main_process: bool = True


@dataclass
class TrainingData:
    """The training records with their sampler and dataset, and the checked targets."""

    records: list[ImageRecord]
    num_ids: int
    num_cams: int
    sampler: PKBatchSampler
    train_set: ReIDImageDataset
    targets: dict[str, ReIDDataset]
    device_augment: BatchTrainAugment | None = None  # data.augment_on=device: applied to each batch in the step


@dataclass
class TrainingRun:
    """Everything an epoch works on; ``epoch`` and ``global_step`` count what is done."""

    config: DCACConfig
    accelerator: Accelerator
    data: TrainingData
    model: torch.nn.Module  # what accelerator.prepare returned (possibly DDP-wrapped)
    dcac: DCAC  # the same model, unwrapped
    optimizer: torch.optim.Optimizer
    logger: RunLogger
    latent_cache: LatentCache | None
    labels: torch.Tensor  # the pid of every training record, on the device
    scaler: torch.amp.GradScaler | None  # train.compat=official: fp16 loss scaling, as the official code
    epoch: int = 0
    global_step: int = 0
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    on_evaluation: EvaluationCallback | None = None
    lock: RunLock | None = None  # the run folder's, held while training

    @property
    def run_dir(self) -> Path:
        return Path(self.config.train.output_dir)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process


def train(
    config: DCACConfig,
    *,
    resume: bool = True,
    stop_after_epoch: int | None = None,
    on_evaluation: EvaluationCallback | None = None,
    on_epoch: Callable[[TrainingRun], None] | None = None,
) -> TrainResult:
    """Train DCAC as configured; ``stop_after_epoch`` ends early (as an interruption would) after that many epochs.

    ``on_evaluation(run_dir, metrics, evaluations, config)`` runs on the main process after each evaluation, once
    ``metrics.json`` is written (``dcac train`` passes ``dcac.inference.report.write_training_report``).
    ``on_epoch(run)`` runs on the main process after each epoch's steps, before the epoch is saved (``dcac demo``
    measures the mechanism there); it must leave the model and the RNGs as it found them.
    """
    run = start_run(config, resume=resume)
    run.on_evaluation = on_evaluation
    try:
        for epoch in range(run.epoch, config.optim.epochs):
            train_one_epoch(run, epoch)
            if on_epoch is not None and run.is_main:
                on_epoch(run)
            end_of_epoch(run, stop_after_epoch)
            if stop_after_epoch is not None and run.epoch >= stop_after_epoch:
                break
        else:
            evaluate_if_missing(run)
    finally:
        run.logger.close()
        run.lock.release()
    return TrainResult(run_dir=run.run_dir, epochs_done=run.epoch, metrics=run.metrics, is_main_process=run.is_main)


def start_run(config: DCACConfig, *, resume: bool) -> TrainingRun:
    """Data, model and optimiser (restored from the run folder's checkpoint when there is one), run folder.

    The run folder's lock is held from here on (``run.lock``); ``resume=False`` replaces the run in it whole.
    """
    accelerator = make_accelerator(config.train)
    lock = claim_training_folder(config, accelerator, resume=resume)
    try:
        run = _start_owned_run(config, accelerator, resume=resume)
    except BaseException:
        lock.release()
        raise
    run.lock = lock
    return run


def _start_owned_run(config: DCACConfig, accelerator: Accelerator, *, resume: bool) -> TrainingRun:
    device, is_main = accelerator.device, accelerator.is_main_process
    seed_everything(config.train.seed)
    data = load_training_data(config, accelerator)
    model, optimizer = build_model_and_optimizer(config, data.num_ids, device, customize=_initialiser(config))
    if is_main and compile_enabled(config.train, device):
        print(
            "train.compile: the first steps compile the ViT and the UNet (about 3 minutes on an H100); "
            "train.compile=false runs eager",
            flush=True,
        )
    # train.compat=official: fp16 loss scaling, as the official code; its state is part of the checkpoint.
    scaler = torch.amp.GradScaler(device.type) if is_official(config) else None
    epoch, global_step = resume_from_checkpoint(config, model, optimizer, scaler, is_main) if resume else (0, 0)
    wrapped, optimizer, dcac_model = prepare_for_training(accelerator, model, optimizer, sync_bn=config.train.sync_bn)
    run_dir = Path(config.train.output_dir)
    if is_main:
        run_info = {
            "num_ids": data.num_ids,
            "num_cams": data.num_cams,
            "num_train_images": len(data.records),
            "sources": list(config.data.sources),
            "targets": list(config.data.targets),
            "dcac_version": dcac.__version__,
        }
        write_run_metadata(run_dir, config, run_info)
        drop_log_entries_after(run_dir / LOG, epoch)
    return TrainingRun(
        config,
        accelerator,
        data,
        wrapped,
        dcac_model,
        optimizer,
        RunLogger(run_dir, enabled=is_main),
        build_latent_cache(config, dcac_model, data.records, accelerator),
        torch.tensor([r.pid for r in data.records], device=device),
        scaler,
        epoch,
        global_step,
    )


def _initialiser(config: DCACConfig):
    """``train.init_from``: start from a run folder's weights (e.g. one written by ``dcac import``)."""
    if not config.train.init_from:
        return None
    from dcac.engine.official_import import initialise_from_run

    return lambda model: initialise_from_run(model, config.train.init_from)


def load_training_data(config: DCACConfig, accelerator: Accelerator) -> TrainingData:
    """The merged sources (unreadable images skipped with ``data.on_corrupt=skip``) and the checked targets."""
    is_main = accelerator.is_main_process
    protocol = build_protocol(
        config.data.sources,
        config.data.targets,
        config.data.root,
        all_splits=config.data.all_splits,
        dataset_options=config.data.options,
        verbose=is_main,
    )
    records, num_ids = protocol.train.records, protocol.train.num_ids
    if config.data.on_corrupt == "skip":
        records, num_ids, dropped = drop_unreadable_training_images(records)
        if dropped and is_main:
            print(dropped)
    # Checked now, so that a target which cannot be evaluated fails before training, not after it.
    targets = {}
    for name, target in protocol.targets.items():
        targets[name], skipped = checked_target(
            target, config.data.on_corrupt, num_workers=max(config.data.num_workers, 1)
        )
        if skipped and is_main:
            print(f"skipped {skipped} unreadable images of target {name}")
    sampler = PKBatchSampler(
        [r.pid for r in records],
        config.data.batch_size,
        config.data.num_instances,
        seed=config.train.seed,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
    )
    transform, device_augment = training_augmentation(config)
    per_step_vae = config.conditioning.has_teacher and not config.diffusion.cache_latents
    diffusion_transform = build_diffusion_transform(config.data.diffusion_size) if per_step_vae else None
    train_set = ReIDImageDataset(records, transform, diffusion_transform=diffusion_transform)
    return TrainingData(records, num_ids, protocol.train.num_cams, sampler, train_set, targets, device_augment)


def training_augmentation(config: DCACConfig) -> tuple[TrainTransform | ResizeTransform, BatchTrainAugment | None]:
    """The loader's image transform and, with ``data.augment_on=device``, the batch augmentation of the step."""
    settings = dict(
        height=config.data.height,
        width=config.data.width,
        flip_p=config.data.flip_p,
        padding=config.data.padding,
        erasing_p=config.data.erasing_p,
    )
    if config.data.augment_on == "device":
        return ResizeTransform(config.data.height, config.data.width), BatchTrainAugment(**settings)
    return build_train_transform(**settings), None


def build_latent_cache(config: DCACConfig, model: DCAC, records, accelerator: Accelerator) -> LatentCache | None:
    """The VAE posterior of every training image (``diffusion.cache_latents``); None without a teacher."""
    if not config.conditioning.has_teacher or not config.diffusion.cache_latents:
        return None
    # Each rank encodes its shard of the training set; the gathered cache is the same on every rank.
    start, stop = shard_bounds(len(records), accelerator.process_index, accelerator.num_processes)
    shard = LatentCache.build(
        model.teacher,
        records[start:stop],
        size=config.data.diffusion_size,
        batch_size=config.data.test_batch_size,
        num_workers=config.data.num_workers,
        device=accelerator.device,
        progress=accelerator.is_main_process and config.train.progress,
    )
    return LatentCache(gather_shards(shard.mean, len(records)), gather_shards(shard.std, len(records)))


def rebuild_memory(run: TrainingRun) -> None:
    """The memory is rebuilt from un-augmented features of every training image (docs/method.md §2).

    Each rank extracts a shard; every rank gets all features, so the memories stay identical.
    """
    config = run.config
    feats = extract_features_sharded(
        run.dcac.reid,
        run.data.records,
        height=config.data.height,
        width=config.data.width,
        batch_size=config.data.test_batch_size,
        num_workers=config.data.num_workers,
        device=run.accelerator.device,
        autocast_dtype=AUTOCAST_DTYPES[config.train.mixed_precision],
    )
    run.dcac.memory.rebuild(feats, run.labels)


def train_one_epoch(run: TrainingRun, epoch: int) -> None:
    """Rebuild the ID memory, then the epoch's P x K steps; logs the steps and the epoch's time."""
    config, accelerator, device = run.config, run.accelerator, run.accelerator.device
    # Per rank: the ranks' augmentation and diffusion noise/timesteps must be independent draws.
    seed_everything(epoch_seed(config.train.seed, epoch) + 1_000_003 * accelerator.process_index)
    run.data.sampler.set_epoch(epoch)
    lr_factor = set_epoch_lr(run.optimizer, epoch, config.optim)
    rebuild_memory(run)

    run.model.train()
    sampler = run.data.sampler
    loader = DataLoader(
        run.data.train_set, batch_sampler=sampler, num_workers=config.data.num_workers, pin_memory=device.type == "cuda"
    )
    steps = (
        len(sampler) if config.train.max_steps_per_epoch <= 0 else min(len(sampler), config.train.max_steps_per_epoch)
    )
    show = run.is_main and config.train.progress
    bar = tqdm(
        total=steps, desc=f"epoch {epoch + 1}/{config.optim.epochs}", disable=None if show else True, leave=False
    )
    started = time.perf_counter()
    parts: dict[str, float] = {}
    sums: dict[str, torch.Tensor] = {}  # of every step's terms (on the device: no sync), for the epoch means
    for step, batch in enumerate(loader):
        if step >= steps:
            break
        step_parts = train_step(
            run.model, run.optimizer, accelerator, batch, run.latent_cache, run.scaler, augment=run.data.device_augment
        )
        sums = {k: sums[k] + v if k in sums else v for k, v in step_parts.items()}
        run.global_step += 1
        bar.update(1)
        # Reading the values waits for the GPU, so only logging steps read them (the epoch's last step is one).
        if run.global_step % config.train.log_every == 0 or step == steps - 1:
            parts = step_values(step_parts)
            bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items()})
            run.logger.log(
                {"epoch": epoch + 1, "step": run.global_step, "lr": config.optim.lr * lr_factor, **parts},
                step=run.global_step,
            )
    bar.close()
    run.epoch = epoch + 1
    if run.is_main:
        seconds = round(time.perf_counter() - started, 2)
        means = {k: v / steps for k, v in step_values(sums).items()}
        run.logger.log({"event": "epoch", "epoch": run.epoch, "seconds": seconds, "means": means})
        if config.train.progress:
            losses = " ".join(f"{k}={v:.3f}" for k, v in parts.items())
            print(
                f"epoch {run.epoch}/{config.optim.epochs} ({seconds:.1f} s, lr x{lr_factor:.3g}): {losses}", flush=True
            )


def end_of_epoch(run: TrainingRun, stop_after_epoch: int | None) -> None:
    """Save when due, then evaluate when due: a failing evaluation never costs the training it follows."""
    config, done = run.config, run.epoch
    last = done == config.optim.epochs
    if run.is_main and (last or done % max(config.train.checkpoint_every, 1) == 0 or done == stop_after_epoch):
        save_tensors_atomic(run.dcac.reid.state_dict(), run.run_dir / REID_WEIGHTS)
        save_training_checkpoint(
            run.run_dir, trainable_state(run.dcac), run.optimizer.state_dict(), _trainer_state(run)
        )
    run.accelerator.wait_for_everyone()
    if config.train.eval_every > 0 and done % config.train.eval_every == 0 or last:
        run.metrics = evaluate_targets(run, done)


def _trainer_state(run: TrainingRun) -> dict[str, Any]:
    """The JSON part of a checkpoint: progress counters and, with ``train.compat=official``, the loss scale."""
    state: dict[str, Any] = {"epoch": run.epoch, "global_step": run.global_step}
    if run.scaler is not None:
        state["grad_scaler"] = run.scaler.state_dict()
    return state


def evaluate_if_missing(run: TrainingRun) -> None:
    """A finished run whose final evaluation did not complete (it failed, or was interrupted) is evaluated now."""
    if run.epoch != run.config.optim.epochs or run.metrics:
        return
    try:
        evaluated = json.loads((run.run_dir / METRICS).read_text()).get("epoch")
    except (OSError, ValueError, AttributeError):
        evaluated = None
    # Every rank reads the same file (a shared run folder), so all of them take part or none does.
    if evaluated != run.epoch:
        run.metrics = evaluate_targets(run, run.epoch)


def evaluate_targets(run: TrainingRun, epoch: int) -> dict[str, dict[str, Any]]:
    """Evaluate on every target, record the numbers in the log and ``metrics.json``, then ``run.on_evaluation``.

    Every rank takes part (each extracts a shard of the features); only the main process writes.
    """
    metrics, evaluations = {}, {}
    for name, target in run.data.targets.items():
        evaluations[name] = (
            target,
            evaluate_on_target(run.dcac.reid, target, run.config, device=run.accelerator.device),
        )
        metrics[name] = evaluations[name][1].metrics
        if run.is_main:
            print(f"epoch {epoch} " + format_metrics(name, metrics[name]))
            run.logger.log(
                {
                    "event": "eval",
                    "epoch": epoch,
                    "target": name,
                    **{k: v for k, v in metrics[name].items() if k != "cmc"},
                }
            )
    if run.is_main:
        write_json_atomic(run.run_dir / METRICS, {"epoch": epoch, "targets": metrics})
        if run.on_evaluation is not None:
            run.on_evaluation(run.run_dir, metrics, evaluations, run.config)
    return metrics
