"""Distributed training and evaluation on CPU: 2 real processes over gloo, launched with torchrun.

Run as a script under torchrun, this file is the worker (``torchrun --standalone --nproc_per_node 2
tests/engine/test_distributed.py DATA_ROOT OUT``); the tests launch it once, plus the README's
``torchrun ... -m dcac.cli train`` command once, and compare what the ranks wrote with single-process runs.

The step-equality check, and why it is not "1 process x B images". With DDP each rank computes its loss
on its own B/2 images and the gradients are averaged. Every loss term is a per-sample mean, so that average
is the full-batch gradient — except through BatchNorm (the BNNeck), whose batch statistics are those of B/2
images per rank. torch's ``SyncBatchNorm`` (``train.sync_bn``) removes that difference, but it only runs on
GPUs. So on CPU the reference is the exact DDP objective computed in one process: for each rank's half, the
forward on that half, ``loss / world_size`` back-propagated; the memory updated from both halves
concatenated in rank order. The diffusion loss stays on: each rank seeds torch's RNG with
``_step_seed(step, rank)`` right before its step, and the reference seeds the same value before the same
draws (latent sample, timesteps, noise) of the same half. Compared at each of 3 steps, starting from the
ranks' state before that step: the averaged gradients, read just before Adam (not the parameters after it:
Adam's first steps are ~lr * sign(g), which turns float noise in near-zero gradient entries into lr-sized
differences), within rtol 1e-4 and atol 1e-5 x the largest gradient entry, and the memory within 1e-5.
Measured: identical to the bit with one thread in both (as here); ~6e-6 x the largest entry with 2 threads
in the reference. A missing gradient average is off by a factor of 2, a missing memory gather by > 0.3 (a whole momentum step).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import default_collate

from dcac.config import DCACConfig, load_config
from dcac.data.image_dataset import ReIDImageDataset
from dcac.data.protocols import build_protocol
from dcac.data.sampler import PKBatchSampler
from dcac.data.transforms import build_test_transform
from dcac.demo.synthetic import write_synthetic
from dcac.engine.latent_cache import LatentCache
from dcac.engine.optim import build_optimizer, set_epoch_lr
from dcac.engine.resume import seed_everything, trainable_state
from dcac.engine.train_step import batch_latents, train_step
from dcac.engine.training_setup import DDP_KWARGS
from dcac.evaluation.distributed import extract_features_sharded, gather_shards, shard_bounds
from dcac.evaluation.features import extract_features, image_loader
from dcac.evaluation.targets import evaluate_on_target
from dcac.models.build import build_dcac

WORLD_SIZE = 2
STEPS = 3
TARGET = "synth_c"
GATHER_SIZES = (0, 1, 5, 6)
BN_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def _step_seed(step: int, rank: int) -> int:
    return 1000 + 10 * step + rank


def _step_config(data_root: Path) -> DCACConfig:
    return load_config("demo", [f"data.root={data_root}", "train.mixed_precision=fp32", "train.progress=false"])


def _train_overrides(data_root: Path, out: Path) -> list[str]:
    """The config of the trainer runs: 2 epochs of 2 steps, a checkpoint after each, an evaluation at the end."""
    return [
        f"data.root={data_root}",
        f"train.output_dir={out}",
        "train.progress=false",
        "optim.epochs=2",
        "optim.warmup_epochs=1",
        "optim.milestones=[1]",
        "train.max_steps_per_epoch=2",
        "train.checkpoint_every=1",
    ]


def _setup(cfg: DCACConfig, with_cache: bool = True):
    """The model, optimiser, un-augmented dataset and latent cache every rank and the reference start from."""
    protocol = build_protocol(cfg.data.sources, cfg.data.targets, cfg.data.root)
    records = protocol.train.records
    seed_everything(cfg.train.seed)
    model = build_dcac(cfg, protocol.train.num_ids)
    optimizer = build_optimizer(model, cfg.optim)
    set_epoch_lr(optimizer, cfg.optim.warmup_epochs, cfg.optim)
    dataset = ReIDImageDataset(records, build_test_transform(cfg.data.height, cfg.data.width))
    cache = LatentCache.build(model.teacher, records, size=cfg.data.diffusion_size) if with_cache else None
    return protocol, model, optimizer, dataset, cache


def _rank_batches(cfg: DCACConfig, pids: list[int], rank: int, world_size: int, epoch: int = 0) -> list[list[int]]:
    sampler = PKBatchSampler(
        pids, cfg.data.batch_size, cfg.data.num_instances, seed=cfg.train.seed, rank=rank, world_size=world_size
    )
    sampler.set_epoch(epoch)
    return list(sampler)


# ---- the worker (runs under torchrun) -------------------------------------------------------------------


def _worker(data_root: Path, out: Path) -> None:
    from accelerate import Accelerator

    from dcac.engine.trainer import train

    accelerator = Accelerator(cpu=True, kwargs_handlers=[DDP_KWARGS])
    rank, world_size = accelerator.process_index, accelerator.num_processes
    assert world_size == WORLD_SIZE, world_size
    report: dict = {}

    cfg = _step_config(data_root)
    protocol, model, optimizer, dataset, cache = _setup(cfg)
    records = protocol.train.records
    pids = [r.pid for r in records]
    # The averaged gradients, read just before Adam uses them (Adam's first steps are ~lr * sign(g), so
    # comparing parameters after the step would amplify float noise in near-zero gradient entries).
    names = {param: name for name, param in model.named_parameters()}
    grads: dict[str, torch.Tensor] = {}

    def keep_gradients(opt, args, kwargs) -> None:
        grads.clear()
        grads.update({names[p]: p.grad.clone() for g in opt.param_groups for p in g["params"] if p.grad is not None})

    optimizer.register_step_pre_hook(keep_gradients)
    model, optimizer = accelerator.prepare(model, optimizer)
    dcac_model = accelerator.unwrap_model(model)
    data = cfg.data
    feats = extract_features_sharded(
        dcac_model.reid, records, height=data.height, width=data.width, batch_size=data.test_batch_size, num_workers=0
    )
    dcac_model.memory.rebuild(feats, torch.tensor(pids))
    save_file({"features": feats}, out / f"rank{rank}_memory_features.safetensors")
    save_file(trainable_state(dcac_model), out / f"rank{rank}_state_before0.safetensors")
    for step, indices in enumerate(_rank_batches(cfg, pids, rank, world_size)[:STEPS]):
        torch.manual_seed(_step_seed(step, rank))
        batch = default_collate([dataset[i] for i in indices])
        train_step(model, optimizer, accelerator, batch, cache)
        save_file(grads, out / f"rank{rank}_grads{step}.safetensors")
        save_file(trainable_state(dcac_model), out / f"rank{rank}_state_before{step + 1}.safetensors")
    report["metrics"] = evaluate_on_target(
        dcac_model.reid, protocol.targets[TARGET], cfg, device=accelerator.device
    ).metrics
    save_file(dict(dcac_model.reid.state_dict()), out / f"rank{rank}_after_eval.safetensors")

    report["shards"] = {epoch: _rank_batches(cfg, pids, rank, world_size, epoch) for epoch in (0, 1)}
    report["gathered"] = {}
    for n in GATHER_SIZES:
        start, stop = shard_bounds(n, rank, world_size)
        local = torch.arange(start, stop, dtype=torch.float32).unsqueeze(1).repeat(1, 3)
        report["gathered"][n] = gather_shards(local, n)[:, 0].tolist()

    try:
        train(load_config("demo", [*_train_overrides(data_root, out / "sync_bn"), "train.sync_bn=true"]))
    except ValueError as err:
        report["sync_bn_error"] = str(err)

    resumed = load_config("demo", _train_overrides(data_root, out / "resumed"))
    report["first_run_epochs"] = train(resumed, stop_after_epoch=1).epochs_done
    report["resumed_run_epochs"] = train(resumed).epochs_done
    (out / f"rank{rank}.json").write_text(json.dumps(report))


# ---- launching --------------------------------------------------------------------------------------------


def _torchrun(args: list[str], out: Path, timeout: float = 240) -> None:
    """Run ``torchrun --standalone --nproc_per_node 2 ARGS`` on CPU (gloo), one thread per process.

    GPUs are hidden: two ranks need two GPUs, and this test is about the collectives, not the device.
    """
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
    cmd = [*launcher, "--standalone", f"--nproc_per_node={WORLD_SIZE}", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    (out / "launcher.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_synthetic(root, seed=0)
    return root


@pytest.fixture(scope="module")
def worker_out(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("worker")
    _torchrun([__file__, str(synth_root), str(out)], out)
    return out


@pytest.fixture(scope="module")
def cli_run(synth_root, tmp_path_factory):
    """The README's command: ``torchrun --standalone --nproc_per_node 2 -m dcac.cli train --config demo ...``."""
    out = tmp_path_factory.mktemp("cli")
    _torchrun(["-m", "dcac.cli", "train", "--config", "demo", *_train_overrides(synth_root, out / "run")], out)
    return out / "run"


def _reports(out: Path) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]


def _without_bn_statistics(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.endswith(BN_STATISTICS)}


# ---- single-process behaviour ----------------------------------------------------------------------------


def test_shard_bounds_are_contiguous_balanced_and_cover_everything():
    for n in range(12):
        for world_size in (1, 2, 3, 5):
            bounds = [shard_bounds(n, r, world_size) for r in range(world_size)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
            sizes = [stop - start for start, stop in bounds]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    with pytest.raises(ValueError, match="rank"):
        shard_bounds(4, 2, 2)


def test_single_process_sharded_extraction_is_plain_extraction(synth_root):
    cfg = _step_config(synth_root)
    protocol = build_protocol(cfg.data.sources, cfg.data.targets, cfg.data.root)
    torch.manual_seed(0)
    reid = build_dcac(cfg, protocol.train.num_ids).reid
    records = protocol.train.records[:37]
    data = cfg.data
    sharded = extract_features_sharded(
        reid, records, height=data.height, width=data.width, batch_size=16, num_workers=0
    )
    plain = extract_features(reid, image_loader(records, data.height, data.width, 16, 0))
    torch.testing.assert_close(sharded, plain, rtol=0, atol=0)
    with pytest.raises(ValueError, match="shard"):
        gather_shards(torch.zeros(3, 2), 4)


def test_sync_bn_conversion_keeps_the_reid_checkpoint_format(synth_root):
    """A run with train.sync_bn writes reid_model.safetensors that a plain (single-device) ReIDModel loads."""
    cfg = _step_config(synth_root)
    torch.manual_seed(0)
    plain = build_dcac(cfg, 10).reid
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(build_dcac(cfg, 10).reid)
    assert isinstance(synced.bottleneck, torch.nn.SyncBatchNorm)
    assert synced.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(synced.state_dict())
    images = torch.randn(4, 3, cfg.data.height, cfg.data.width)
    torch.testing.assert_close(plain.eval()(images).feat_bn, synced.eval()(images).feat_bn, rtol=0, atol=0)


# ---- two processes ----------------------------------------------------------------------------------------


def test_sampler_shards_are_disjoint_equal_length_and_cover_the_epoch(worker_out, synth_root):
    cfg = _step_config(synth_root)
    protocol = build_protocol(cfg.data.sources, cfg.data.targets, cfg.data.root)
    pids = [r.pid for r in protocol.train.records]
    reports = _reports(worker_out)
    for epoch in ("0", "1"):
        shards = [report["shards"][epoch] for report in reports]
        single = _rank_batches(cfg, pids, 0, 1, int(epoch))
        assert len(shards[0]) == len(shards[1]) == len(single) > 0
        for step, whole in enumerate(single):
            parts = [shard[step] for shard in shards]
            assert all(len(part) == len(whole) // WORLD_SIZE for part in parts)
            identities = [{pids[i] for i in part} for part in parts]
            assert not identities[0] & identities[1]
            assert sorted(parts[0] + parts[1]) == sorted(whole)
    assert reports[0]["shards"]["0"] != reports[0]["shards"]["1"]


def test_gather_shards_pads_unequal_shards_and_keeps_order(worker_out):
    for report in _reports(worker_out):
        for n in GATHER_SIZES:
            assert report["gathered"][str(n)] == list(range(n))


def test_memory_rebuild_gathers_the_whole_training_set(worker_out, synth_root):
    cfg = _step_config(synth_root)
    _, model, _, dataset, _ = _setup(cfg, with_cache=False)
    data = cfg.data
    expected = extract_features(
        model.reid, image_loader(dataset.records, data.height, data.width, data.test_batch_size, 0)
    )
    for rank in range(WORLD_SIZE):
        gathered = load_file(worker_out / f"rank{rank}_memory_features.safetensors")["features"]
        torch.testing.assert_close(gathered, expected, rtol=0, atol=1e-6)


def test_two_ranks_compute_the_whole_batch_gradient_and_keep_identical_memories(worker_out, synth_root):
    cfg = _step_config(synth_root)
    protocol, model, _, dataset, cache = _setup(cfg)
    pids = [r.pid for r in protocol.train.records]
    halves = [_rank_batches(cfg, pids, rank, WORLD_SIZE)[:STEPS] for rank in range(WORLD_SIZE)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank ran: the same kernels, so float noise stays far below the tolerance
    try:
        _compare_steps_with_reference(worker_out, cfg, model, dataset, cache, halves)
    finally:
        torch.set_num_threads(threads)


def _compare_steps_with_reference(worker_out, cfg, model, dataset, cache, halves) -> None:
    for step in range(STEPS):
        # Each step starts from the ranks' own state, so the comparison covers every step without drift.
        model.load_state_dict(load_file(worker_out / f"rank0_state_before{step}.safetensors"), strict=False)
        model.zero_grad(set_to_none=True)
        embeddings, labels = [], []
        for rank in range(WORLD_SIZE):
            torch.manual_seed(_step_seed(step, rank))
            batch = default_collate([dataset[i] for i in halves[rank][step]])
            out = model(batch["image"], batch["pid"], batch_latents(model, batch, cache, torch.device("cpu")))
            (out.loss / WORLD_SIZE).backward()
            embeddings.append(out.embeddings)
            labels.append(batch["pid"])
        expected = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
        ranks = [load_file(worker_out / f"rank{rank}_grads{step}.safetensors") for rank in range(WORLD_SIZE)]
        assert any("lora_" in k for k in expected) and any(k.startswith("conditioner.") for k in expected)
        atol = 1e-5 * max(float(g.abs().max()) for g in expected.values())
        for rank_grads in ranks:
            assert rank_grads.keys() == expected.keys()
            for name, grad in expected.items():
                torch.testing.assert_close(rank_grads[name], grad, rtol=1e-4, atol=atol, msg=f"step {step}: {name}")

        model.memory.update(torch.cat(embeddings), torch.cat(labels))
        after = [load_file(worker_out / f"rank{rank}_state_before{step + 1}.safetensors") for rank in range(WORLD_SIZE)]
        torch.testing.assert_close(
            after[0]["memory.features"], model.memory.features, rtol=0, atol=1e-5, msg=f"step {step}"
        )
        # Same parameters (DDP) and the same memory (the update from the gathered batch), bit for bit.
        for key, value in _without_bn_statistics(after[0]).items():
            torch.testing.assert_close(after[1][key], value, rtol=0, atol=0, msg=f"step {step}: {key}")
    start = load_file(worker_out / "rank0_state_before0.safetensors")["memory.features"]
    assert (model.memory.features - start).abs().max() > 1e-3  # the steps did move the memory


def test_evaluation_uses_rank0_statistics_and_matches_one_process(worker_out, synth_root):
    cfg = _step_config(synth_root)
    last = [load_file(worker_out / f"rank{rank}_state_before{STEPS}.safetensors") for rank in range(WORLD_SIZE)]
    mean_key = next(k for k in last[0] if k.startswith("reid.") and k.endswith("running_mean"))
    # Each rank's BNNeck tracked its own half-batches: the ranks disagree until the evaluation syncs them.
    assert not torch.equal(last[0][mean_key], last[1][mean_key])
    after = [load_file(worker_out / f"rank{rank}_after_eval.safetensors") for rank in range(WORLD_SIZE)]
    for key in after[0]:
        torch.testing.assert_close(after[1][key], after[0][key], rtol=0, atol=0, msg=key)
    protocol = build_protocol(cfg.data.sources, cfg.data.targets, cfg.data.root)
    reid = build_dcac(cfg, protocol.train.num_ids).reid
    reid.load_state_dict({k.removeprefix("reid."): v for k, v in last[0].items() if k.startswith("reid.")})
    expected = evaluate_on_target(reid, protocol.targets[TARGET], cfg).metrics
    for report in _reports(worker_out):
        assert report["metrics"].keys() == expected.keys()
        for name in ("mAP", "mINP", "rank1", "rank5"):
            assert report["metrics"][name] == pytest.approx(expected[name], abs=1e-4), name


def test_cli_torchrun_training_resumes_exactly_and_only_rank0_writes(cli_run, worker_out):
    reports = _reports(worker_out)
    assert [r["first_run_epochs"] for r in reports] == [1, 1]
    assert [r["resumed_run_epochs"] for r in reports] == [2, 2]
    straight = load_file(cli_run / "checkpoint" / "model.safetensors")
    resumed = load_file(worker_out / "resumed" / "checkpoint" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0, msg=key)
    log = [json.loads(line) for line in (cli_run / "log.jsonl").read_text().splitlines()]
    evals = [entry["epoch"] for entry in log if entry.get("event") == "eval"]
    assert evals == [2]  # one line per evaluation: only rank 0 logs
    steps = [entry["step"] for entry in log if "loss" in entry]
    assert steps == sorted(set(steps))
    assert all("SyncBatchNorm does not run on CPU" in r.get("sync_bn_error", "") for r in reports)
    metrics = json.loads((cli_run / "metrics.json").read_text())
    resumed_metrics = json.loads((worker_out / "resumed" / "metrics.json").read_text())
    assert metrics == resumed_metrics


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))
