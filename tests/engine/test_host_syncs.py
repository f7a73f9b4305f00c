"""The training step never makes the host wait for the device; the trainer reads values only when it logs.

A GPU step that reads a value back (``float(t)``, ``t.item()``, ``if t:``) or runs an op whose output size
depends on the data (boolean-mask indexing, ``nonzero``, ``unique``) stalls the CPU until every queued
kernel has run, so it cannot queue the next step's kernels meanwhile. On the CPU there is no queue to observe,
but every such read goes through one of a few aten operators, which a dispatch mode sees on any device.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch.utils._python_dispatch import TorchDispatchMode

from dcac.config import load_config
from dcac.demo.synthetic import write_synthetic
from dcac.engine.latent_cache import LatentCache
from dcac.engine.optim import build_optimizer
from dcac.engine.train_step import step_values, train_step
from dcac.engine.trainer import train
from dcac.models.build import build_dcac

#: aten operators that copy a value to the host or whose output shape depends on tensor values.
HOST_READS = {
    "_local_scalar_dense",
    "nonzero",
    "nonzero_static",
    "masked_select",
    "_unique2",
    "unique_dim",
    "unique_consecutive",
    "bincount",
}


class HostReadCounter(TorchDispatchMode):
    """Counts the operators of HOST_READS and indexing with a boolean mask, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        if name in HOST_READS:
            self.reads[name] += 1
        elif name.startswith(("index", "_index_put")) and any(_has_bool_tensor(a) for a in args):
            self.reads[f"{name} (boolean mask)"] += 1
        return func(*args, **(kwargs or {}))


def _has_bool_tensor(arg) -> bool:
    items = arg if isinstance(arg, (list, tuple)) else [arg]
    return any(isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in items)


def test_the_counter_sees_each_kind_of_host_read():
    x = torch.arange(6.0)
    with HostReadCounter() as counter:
        float(x.sum())
        x[x > 2].sum()
        torch.unique(x)
        bool(x.max() > 1)
    assert counter.reads["_local_scalar_dense"] == 2
    assert counter.reads["index (boolean mask)"] == 1 and counter.reads["_unique2"] == 1


def _step_setup(update: str = "hard"):
    cfg = load_config("demo", [f"loss.pcl_update={update}"])
    torch.manual_seed(0)
    model = build_dcac(cfg, 6).train()
    with torch.no_grad():
        dim = model.memory.features.shape[1]
        model.memory.rebuild(F.normalize(torch.randn(6, dim), dim=1), torch.arange(6))
    accelerator = Accelerator(cpu=True)
    # Fused Adam, as the trainer uses on CUDA (its step counters live on the device; plain Adam's on the host).
    model, optimizer = accelerator.prepare(model, build_optimizer(model, cfg.optim, fused=True))
    views = torch.rand(8, 3, cfg.data.diffusion_size, cfg.data.diffusion_size) * 2 - 1
    cache = LatentCache(*accelerator.unwrap_model(model).teacher.encode_posterior(views))
    batch = {
        "image": torch.randn(8, 3, cfg.data.height, cfg.data.width),
        "pid": torch.tensor([0, 0, 0, 0, 3, 3, 3, 3]),
        "index": torch.arange(8),
    }
    return cfg, model, optimizer, accelerator, batch, cache


def test_train_step_reads_nothing_back_and_returns_detached_tensors():
    cfg, model, optimizer, accelerator, batch, cache = _step_setup()
    train_step(model, optimizer, accelerator, batch, cache)  # the first step creates Adam's state
    before = accelerator.unwrap_model(model).memory.features.clone()
    with HostReadCounter() as counter:
        parts = train_step(model, optimizer, accelerator, batch, cache)
    assert dict(counter.reads) == {}
    assert set(parts) >= {"loss", "loss_id", "loss_pcl", "loss_diff", "acc"}
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad for v in parts.values())
    # The sync-free memory update still moved the batch's identities (0 and 3) and only them.
    moved = (accelerator.unwrap_model(model).memory.features - before).abs().sum(dim=1) > 0
    assert moved.tolist() == [True, False, False, True, False, False]


def test_step_values_equal_float_of_each_tensor():
    g = torch.Generator().manual_seed(0)
    parts = {
        f"{dtype}": (torch.randn((), generator=g) * 37).to(dtype)
        for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64)
    }
    parts["count"] = torch.tensor(123456789)
    parts["lr"] = 3.5e-4  # a plain number passes through
    values = step_values(parts)
    assert list(values) == list(parts)
    for key, value in parts.items():
        assert type(values[key]) is float and values[key] == float(value), key
    assert step_values({}) == {}


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_synthetic(root, seed=0)
    return root


def _logged_steps(root, out, log_every: int) -> dict[int, dict]:
    cfg = load_config(
        "demo",
        [
            f"data.root={root}",
            f"train.output_dir={out}",
            "train.progress=false",
            "optim.epochs=1",
            "optim.warmup_epochs=0",
            "train.max_steps_per_epoch=3",
            f"train.log_every={log_every}",
            "train.eval_every=0",
        ],
    )
    train(cfg)
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {line["step"]: {k: v for k, v in line.items() if k != "time"} for line in lines if "loss" in line}


def test_logged_values_are_those_of_their_step(synth_root, tmp_path):
    """Reading values only at logging steps logs exactly what logging every step logs at those steps."""
    every = _logged_steps(synth_root, tmp_path / "every", 1)
    sparse = _logged_steps(synth_root, tmp_path / "sparse", 2)
    assert sorted(every) == [1, 2, 3] and sorted(sparse) == [2, 3]  # step 3 ends the epoch
    assert len({every[s]["loss"] for s in every}) == 3  # the steps differ, so a stale value would show
    for step in sparse:
        assert sparse[step] == every[step]
