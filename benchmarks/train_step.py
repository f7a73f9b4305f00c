"""Training-step throughput and peak memory: a reference design vs dcac's default, in one run.

    python benchmarks/train_step.py --out benchmarks/results/train_step_<device>.json   # full size (GPU)
    python benchmarks/train_step.py --reduced        # full-size models, batch 8 (CPU)
    python benchmarks/train_step.py --tiny           # tiny models, seconds (the test suite's smoke test)

Every variant runs ``dcac.engine.train_step.train_step`` (the trainer's own step: forward, backward, Adam,
memory update) on a model built by ``dcac.models.build.build_dcac`` with random weights (no downloads), on
synthetic batches already on the device: images/s measures the step, not data loading.

* ``reference`` mirrors the paper's code design: fp16 autocast (with a gradient scaler on CUDA), the VAE
  encoder run at every step, UNet gradient checkpointing, diffusers' plain (non-SDPA) ``AttnProcessor`` on
  every UNet and VAE attention and no single-token shortcut, plain Adam.
* ``dcac`` is dcac's default: bf16 autocast, latents drawn from the cached VAE posterior, SDPA, the
  single-token cross-attention, the frozen UNet layers stored in bf16, fused Adam, ViT gradient
  checkpointing, no UNet checkpointing, and on CUDA ``torch.compile`` of the ViT and the UNet (never on the
  CPU, whose inductor compiles the UNet's backward wrongly in torch 2.13).
* the default set on CUDA adds the eager steps ``+fused_adam`` (no checkpointing at all) and
  ``+encoder_ckpt`` (dcac uncompiled); the ``ladder`` set adds dcac's changes to the reference one at a
  time, to attribute the speed-up, plus ``dcac+unet_ckpt`` and ``dcac+channels_last`` (both slower).

The CLIP ViT uses SDPA in every variant: the paper's code runs CLIP's ``nn.MultiheadAttention`` with
``need_weights=False``, which torch 2 already executes with scaled-dot-product attention.

Each variant runs in its own process: accelerate allows one mixed-precision setting per process, a failure
(out of memory, a compiler error) costs only its own row, and peak memory is per variant (on the CPU the
process's peak RSS, which includes building the models).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, format_table, gib, result_slug, write_json
from flops import utilisation


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str  # fp16 | bf16 | fp32
    cache_latents: bool  # False = VAE encoder at every step
    checkpointing: bool  # UNet gradient checkpointing
    attention: str  # plain (diffusers AttnProcessor) | sdpa (AttnProcessor2_0)
    single_token: bool  # single-token cross-attention shortcut
    fused_adam: bool  # fused Adam where the device has it (CUDA), as the trainer does
    frozen_in_autocast_dtype: bool  # frozen UNet Linear/Conv weights stored in the autocast dtype
    encoder_checkpointing: bool  # ViT gradient checkpointing
    compile: str  # train.compile: auto (= on CUDA only) | true | false
    channels_last: bool = False
    read_every_step: bool = False  # read the loss values back after every step, as dcac v0.1's step did
    augment_on_device: bool = False  # data.augment_on=device: uint8 batches, augmented on the device in the step


REFERENCE = Variant(
    "reference",
    "fp16",
    cache_latents=False,
    checkpointing=True,
    attention="plain",
    single_token=False,
    fused_adam=False,
    frozen_in_autocast_dtype=False,
    encoder_checkpointing=False,
    compile="false",
)
DCAC_DEFAULT = Variant(
    "dcac",
    "bf16",
    cache_latents=True,
    checkpointing=False,
    attention="sdpa",
    single_token=True,
    fused_adam=True,
    frozen_in_autocast_dtype=True,
    encoder_checkpointing=True,
    compile="auto",
)


def _ladder() -> list[Variant]:
    """The reference, then dcac's changes added one at a time; the last rung is dcac's default."""
    steps = [
        ("+sdpa", {"attention": "sdpa"}),
        ("+single_token", {"single_token": True}),
        ("+no_unet_ckpt", {"checkpointing": False}),
        ("+latent_cache", {"cache_latents": True}),
        ("+bf16", {"precision": "bf16"}),
        ("+frozen_bf16", {"frozen_in_autocast_dtype": True}),
        ("+fused_adam", {"fused_adam": True}),
        ("+encoder_ckpt", {"encoder_checkpointing": True}),
        ("+compile (=dcac)", {"compile": "auto"}),
    ]
    rungs, current = [REFERENCE], REFERENCE
    for name, change in steps:
        current = replace(current, name=name, **change)
        rungs.append(current)
    assert replace(rungs[-1], name=DCAC_DEFAULT.name) == DCAC_DEFAULT
    return rungs


VARIANTS: dict[str, Variant] = {v.name: v for v in _ladder()}
VARIANTS.update(
    {
        "dcac": DCAC_DEFAULT,
        "dcac+unet_ckpt": replace(DCAC_DEFAULT, name="dcac+unet_ckpt", checkpointing=True),
        "dcac+channels_last": replace(DCAC_DEFAULT, name="dcac+channels_last", channels_last=True),
        "dcac+per_step_reads": replace(DCAC_DEFAULT, name="dcac+per_step_reads", read_every_step=True),
        "dcac+device_augment": replace(DCAC_DEFAULT, name="dcac+device_augment", augment_on_device=True),
    }
)
#: The worker name that counts the model FLOPs of a step instead of timing a variant.
FLOPS_WORKER = "model-flops"
#: The worker name that times the official code's step (``--official DIR``, see official_step.py).
OFFICIAL_WORKER = "official"
#: The row the speed-ups "vs v0.1" are taken against: dcac v0.1's default step.
V01_ROW = "dcac+per_step_reads"
VARIANT_SETS = {
    "cpu": ["reference", "dcac"],
    # dcac's eager steps without and with ViT checkpointing, then the default (compiled on CUDA).
    "cuda": ["reference", "+fused_adam", "+encoder_ckpt", "dcac+per_step_reads", "dcac"],
    "ladder": [v.name for v in _ladder()] + ["dcac+unet_ckpt", "dcac+channels_last"],
    "all": list(VARIANTS),
}


@dataclass(frozen=True)
class Size:
    """What is built and fed: a config preset plus overrides, the batch and the identity count."""

    name: str
    preset: str
    batch_size: int
    num_ids: int
    warmup: int
    steps: int
    overrides: tuple[str, ...] = ()


SIZES = {
    # The released single-source setting: ViT-B/16 at 256x128, SD v1.5 on 128x128 views, LoRA rank 8; 751 ids (Market-1501).
    "full": Size("full", "ma_to_ms", batch_size=64, num_ids=751, warmup=3, steps=10),
    "reduced": Size("reduced", "ma_to_ms", batch_size=8, num_ids=751, warmup=1, steps=3),
    "tiny": Size("tiny", "demo", batch_size=8, num_ids=16, warmup=1, steps=2),
}


# ---------------------------------------------------------------------------------------------------------
# worker: one variant, in this process


def run_variant(
    variant: Variant, size: Size, device_arg: str | None, *, cpu_fp16: bool = False, seed: int = 0
) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from common import environment, peak_memory, pick_device, reset_peak_memory, synchronize, time_calls
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    from dcac.config import load_config
    from dcac.data.batch_augment import BatchTrainAugment
    from dcac.engine.latent_cache import LatentCache
    from dcac.engine.train_step import batch_latents, step_values, train_step
    from dcac.engine.training_setup import (
        build_model_and_optimizer,
        compile_enabled,
        make_accelerator,
        prepare_for_training,
    )
    from dcac.models.single_token_attention import install_single_token_attention

    device = pick_device(device_arg)
    requested_precision = variant.precision
    if device.type == "cpu" and variant.precision == "fp16" and not cpu_fp16:
        # CPUs without fp16 arithmetic run fp16 autocast ~100x slower than fp32: not the design's cost.
        variant = replace(variant, precision="fp32")
    config = load_config(
        size.preset,
        [
            *size.overrides,
            f"data.batch_size={size.batch_size}",
            f"train.mixed_precision={variant.precision}",
            f"diffusion.cache_latents={variant.cache_latents}",
            f"diffusion.gradient_checkpointing={variant.checkpointing}",
            f"encoder.gradient_checkpointing={variant.encoder_checkpointing}",
            f"train.frozen_weights_in_autocast_dtype={variant.frozen_in_autocast_dtype}",
            f"diffusion.single_token_attention={variant.single_token}",
            f"train.channels_last={variant.channels_last}",
            f"train.compile={variant.compile}",
        ],
    )
    accelerator = make_accelerator(config.train, cpu=device.type == "cpu")

    def set_attention(model) -> None:
        model.to(device)
        if variant.attention == "plain":
            model.teacher.unet.set_attn_processor(AttnProcessor())
            model.teacher.vae.set_attn_processor(AttnProcessor())
            if variant.single_token:
                install_single_token_attention(model.teacher.unet)
        else:
            model.teacher.vae.set_attn_processor(AttnProcessor2_0())

    torch.manual_seed(seed)
    # The trainer's own setup. Initialising on the device is much faster for the 1B parameters than on the CPU.
    with torch.device(device):
        model, optimizer = build_model_and_optimizer(
            config, size.num_ids, device, fused_adam=variant.fused_adam, customize=set_attention
        )
    teacher = model.teacher
    compiled = compile_enabled(config.train, device)
    fused = variant.fused_adam and device.type == "cuda"
    model.train()
    model, optimizer, dcac_model = prepare_for_training(accelerator, model, optimizer)
    with torch.no_grad():
        dim = dcac_model.memory.features.shape[1]
        dcac_model.memory.rebuild(
            F.normalize(torch.randn(size.num_ids, dim, device=device), dim=1), torch.arange(size.num_ids, device=device)
        )

    # Two distinct P x K batches, alternated, so no step sees exactly the previous step's input.
    batch, k = size.batch_size, config.data.num_instances
    num_batches = 2
    pool = batch * num_batches
    g = torch.Generator(device="cpu").manual_seed(seed + 1)
    images = (torch.randn(pool, 3, config.data.height, config.data.width, generator=g) * 0.5).to(device)
    views = (torch.rand(pool, 3, config.data.diffusion_size, config.data.diffusion_size, generator=g) * 2 - 1).to(
        device
    )
    ids = torch.cat([torch.randperm(size.num_ids, generator=g)[: batch // k] for _ in range(num_batches)])
    labels = ids.repeat_interleave(k).to(device)
    batches = []
    for j in range(num_batches):
        part = slice(j * batch, (j + 1) * batch)
        item = {"image": images[part], "pid": labels[part], "index": torch.arange(pool, device=device)[part]}
        if not variant.cache_latents:
            item["diffusion_image"] = views[part]
        batches.append(item)

    latent_cache, cache_images_per_s = None, None
    if variant.cache_latents:
        # Built once per run from every training image; timed apart from the steps, as its cost is amortised.
        synchronize(device)
        start = time.perf_counter()
        latent_cache = _build_cache(teacher, views, batch, LatentCache)
        synchronize(device)
        cache_images_per_s = pool / (time.perf_counter() - start)

    # A fingerprint of the first step's mathematics, before any update: the loss and every trainable tensor's
    # gradient norm for the same batch, latents, timesteps and noise (same seeds). Speed paths must leave it
    # unchanged (up to the precision's round-off); the parent compares the variants.
    # fp16 gradients of a full-size model underflow without loss scaling, so the fp16 probe scales the loss
    # like a gradient scaler (2^16, halved while any gradient overflows) and divides the norms back.
    scale = 2.0**16 if variant.precision == "fp16" else 1.0
    probe = batches[0]
    while True:
        dcac_model.zero_grad(set_to_none=True)
        torch.manual_seed(seed + 2)
        latents = batch_latents(dcac_model, probe, latent_cache, device)
        with accelerator.autocast():
            out = model(probe["image"], probe["pid"], latents)
        (out.loss * scale).backward()
        grad_norms = {
            n: float(p.grad.float().norm()) / scale if p.grad is not None else 0.0
            for n, p in dcac_model.named_parameters()
            if p.requires_grad
        }
        if scale <= 1.0 or all(math.isfinite(v) for v in grad_norms.values()):
            break
        scale /= 2
    probe_loss = float(out.loss.detach())
    dcac_model.zero_grad(set_to_none=True)
    del out, latents

    last: dict[str, Any] = {}
    counter = iter(range(10**9))
    augment = BatchTrainAugment(config.data.height, config.data.width) if variant.augment_on_device else None
    if augment is not None:
        # The probe above saw the float images every variant sees; the steps get what the loader then delivers.
        for b in batches:
            b["image"] = (b["image"] * 0.5 + 0.5).clamp(0, 1).mul(255).round().to(torch.uint8)

    def step() -> None:
        nonlocal last
        batch = batches[next(counter) % num_batches]
        last = train_step(model, optimizer, accelerator, batch, latent_cache, augment=augment)
        if variant.read_every_step:
            step_values(last)

    reset_peak_memory(device)
    warmup = max(size.warmup, 3) if compiled else size.warmup
    # Back to back, synchronised once: a step that never waits for the device lets the host queue the next.
    timing = time_calls(step, warmup=warmup, repeats=size.steps, device=device, sync_each_call=False)
    last = step_values(last)
    if not all(math.isfinite(v) for v in last.values()):
        raise FloatingPointError(f"non-finite loss terms after the timed steps: {last}")
    return {
        **asdict(variant),
        "requested_precision": requested_precision,
        "status": "ok",
        "fused_adam_used": fused,
        "compiled": compiled,
        "unet_attention_processors": sorted({type(p).__name__ for p in teacher.unet.attn_processors.values()}),
        "vae_attention_processors": sorted({type(p).__name__ for p in teacher.vae.attn_processors.values()}),
        "unet_gradient_checkpointing": bool(teacher.unet.is_gradient_checkpointing),
        "images_per_s": size.batch_size * timing["repeats"] / timing["total_s"],
        "step_ms_mean": timing["mean_s"] * 1000,
        "warmup_steps": warmup,
        "warmup_s": timing["warmup_s"],
        "timed_steps": timing["repeats"],
        "latent_cache_build_images_per_s": cache_images_per_s,
        "last_losses": last,
        "probe_loss": probe_loss,
        "probe_loss_scale": scale,
        "probe_grad_norms": grad_norms,
        "sizes": {
            "preset": size.preset,
            "batch_size": size.batch_size,
            "num_ids": size.num_ids,
            "image_hw": [config.data.height, config.data.width],
            "diffusion_view": config.data.diffusion_size,
            "latent_shape": list(latent_cache.mean.shape[1:]) if latent_cache is not None else None,
            "encoder": config.encoder.preset,
            "unet_vae": config.diffusion.preset,
            "lora_rank": config.diffusion.lora_rank,
            "trainable_parameters": sum(p.numel() for p in dcac_model.parameters() if p.requires_grad),
            "total_parameters": sum(p.numel() for p in dcac_model.parameters()),
        },
        **peak_memory(device),
        "environment": environment(device),
    }


def _build_cache(teacher, views, batch: int, cache_class):
    import torch

    means, stds = [], []
    with torch.no_grad():
        for chunk in views.split(batch):
            mean, std = teacher.encode_posterior(chunk)
            means.append(mean)
            stds.append(std)
    return cache_class(torch.cat(means), torch.cat(stds))


# ---------------------------------------------------------------------------------------------------------
# parent: one process per variant, then the table and the JSON

_TABLE = [
    ("name", "variant"),
    ("precision", "precision"),
    ("latents", "latents"),
    ("checkpointing", "UNet ckpt"),
    ("encoder_checkpointing", "ViT ckpt"),
    ("frozen_in_autocast_dtype", "frozen bf16"),
    ("attention", "attention"),
    ("single_token", "1-token"),
    ("fused_adam_used", "fused Adam"),
    ("channels_last", "ch-last"),
    ("compiled", "compiled"),
    ("images_per_s", "images/s"),
    ("tflops_per_s", "TFLOP/s"),
    ("mfu", "MFU"),
    ("step_ms_mean", "step ms"),
    ("peak_gib", "peak GiB"),
    ("speedup", "x ref speed"),
    ("speedup_vs_official", "x official"),
    ("speedup_vs_v01", "x v0.1"),
    ("memory_ratio", "x ref memory"),
    ("probe_grad_diff", "grad diff vs dcac"),
    ("probe_grad_diff_vs_reference", "grad diff vs ref"),
    ("status", "status"),
]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--tiny", action="store_true", help="tiny models (seconds; smoke test)")
    scale.add_argument("--reduced", action="store_true", help="full-size models, batch 8 (CPU)")
    parser.add_argument(
        "--variants",
        default=None,
        help=f"comma list of {sorted(VARIANTS)} or a set {sorted(VARIANT_SETS)}; default: the set named after the device ('cuda' or 'cpu')",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="override the size's batch")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant")
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed warm-up steps (compiled variants get at least 3)"
    )
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    parser.add_argument(
        "--official",
        type=Path,
        default=None,
        help="a clone of the official DCAC repository: time its training step as the first row (needs loralib, einops)",
    )
    parser.add_argument(
        "--cpu-fp16",
        action="store_true",
        help="keep fp16 autocast on the CPU (default: fp32 there, as CPU fp16 is emulated)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON file (default benchmarks/results/train_step_<device>[_<size>].json)",
    )
    parser.add_argument(
        "--variant-timeout",
        type=float,
        default=None,
        help="seconds per variant process (default 600; 3600 for --reduced)",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _size(args: argparse.Namespace) -> Size:
    size = SIZES["tiny" if args.tiny else "reduced" if args.reduced else "full"]
    changes = {
        k: v
        for k, v in {"batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup}.items()
        if v is not None
    }
    if changes.get("batch_size", 4) % 4:
        raise SystemExit(
            f"--batch-size must be a multiple of 4 (P identities x K=4 images), got {changes['batch_size']}"
        )
    return replace(size, **changes)


def _variant_names(spec: str) -> list[str]:
    names: list[str] = []
    for part in spec.split(","):
        part = part.strip()
        expanded = VARIANT_SETS.get(part, [part])
        for name in expanded:
            if name not in VARIANTS:
                raise SystemExit(
                    f"unknown variant {name!r}; variants: {', '.join(VARIANTS)}; sets: {', '.join(VARIANT_SETS)}"
                )
            if name not in names:
                names.append(name)
    return names


def _worker_command(args: argparse.Namespace, name: str, out: Path) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--worker-out", str(out)]
    for flag, value in (
        ("--batch-size", args.batch_size),
        ("--steps", args.steps),
        ("--warmup", args.warmup),
        ("--device", args.device),
    ):
        if value is not None:
            command += [flag, str(value)]
    if args.cpu_fp16:
        command.append("--cpu-fp16")
    if args.official:
        command += ["--official", str(args.official)]
    if args.tiny:
        command.append("--tiny")
    if args.reduced:
        command.append("--reduced")
    return command


def _run_worker(args: argparse.Namespace, size: Size, name: str) -> dict[str, Any]:
    timeout = args.variant_timeout or (3600.0 if size.name == "reduced" else 600.0)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "variant.json"
        try:
            proc = subprocess.run(_worker_command(args, name, out), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {**_identity(name), "status": f"timeout after {timeout:.0f} s"}
        if out.is_file():
            return json.loads(out.read_text())
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-12:]
        return {**_identity(name), "status": f"failed (exit {proc.returncode})", "error": "\n".join(tail)}


def _identity(name: str) -> dict[str, Any]:
    return asdict(VARIANTS[name]) if name in VARIANTS else {"name": name}


def _model_flops(size: Size, device_arg: str | None) -> dict[str, Any]:
    """The model FLOPs of the benchmarked step (see flops.py), counted at one P x K batch of one identity."""
    from common import environment, pick_device
    from flops import train_step_flops

    from dcac.config import load_config

    device = pick_device(device_arg)
    k = load_config(size.preset, list(size.overrides)).data.num_instances
    return {
        "status": "ok",
        **train_step_flops(size.preset, list(size.overrides), size.num_ids, device, batch_size=k),
        "environment": environment(device),
    }


def _grad_difference(result: dict[str, Any], baseline: dict[str, Any]) -> float:
    """Largest relative difference of a tensor's first-step gradient norm from the baseline variant's.

    Each tensor's norm is compared relative to itself, floored at 1e-2 of the largest norm of its model part
    (reid / conditioner / teacher), so tensors whose gradient is ~0 contribute round-off only. A speed path in
    the baseline's precision stays at round-off (< ~1e-2); a wrong or missing gradient gives ~1.
    """
    if "probe_grad_norms" not in result:
        return None  # the official code's row: other weights, no probe
    want, got = baseline["probe_grad_norms"], result["probe_grad_norms"]
    if want.keys() != got.keys():
        return float("inf")
    part_max: dict[str, float] = {}
    for name, norm in want.items():
        part = name.split(".")[0]
        part_max[part] = max(part_max.get(part, 0.0), norm)
    return max(abs(got[n] - w) / max(w, 1e-2 * part_max[n.split(".")[0]], 1e-30) for n, w in want.items())


def _row(result: dict[str, Any], reference: dict[str, Any] | None, baseline: dict[str, Any] | None) -> dict[str, Any]:
    row = {k: v for k, v in result.items() if k != "probe_grad_norms"}
    if baseline and result.get("status") == "ok":
        row["probe_grad_diff"] = _grad_difference(result, baseline)
    if reference and reference.get("status") == "ok" and result.get("status") == "ok":
        row["probe_grad_diff_vs_reference"] = _grad_difference(result, reference)
    row["latents"] = "cache" if result.get("cache_latents") else "VAE/step"
    row["peak_gib"] = gib(result.get("peak_memory_bytes"))
    if reference and reference.get("status") == "ok" and result.get("status") == "ok":
        row["speedup"] = result["images_per_s"] / reference["images_per_s"]
        row["memory_ratio"] = result["peak_memory_bytes"] / reference["peak_memory_bytes"]
    return row


def _summary(
    args: argparse.Namespace,
    size: Size,
    results: list[dict[str, Any]],
    flops: dict[str, Any] | None = None,
    official: dict[str, Any] | None = None,
) -> dict[str, Any]:
    first_ok = next((r for r in results if r.get("status") == "ok"), {})
    env = first_ok.get("environment")
    by_name = {r["name"]: r for r in results}
    reference, dcac = by_name.get("reference"), by_name.get("dcac") or by_name.get("+compile (=dcac)")
    ok = lambda r: r is not None and r.get("status") == "ok"  # noqa: E731
    baseline = dcac if ok(dcac) else first_ok or None
    rows = [_row(r, reference, baseline) for r in ([official] if official else []) + results]
    _add_utilisation_and_speedups(rows, flops, env, official, by_name.get(V01_ROW))
    sizes = {k: v for k, v in first_ok.get("sizes", {}).items() if k not in ("trainable_parameters", "latent_shape")}
    return {
        "benchmark": "train_step",
        "size": size.name,
        "sizes": {**sizes, "warmup_steps": size.warmup, "timed_steps": size.steps},
        "environment": env,
        "speedup_dcac_vs_reference": dcac["images_per_s"] / reference["images_per_s"]
        if ok(reference) and ok(dcac)
        else None,
        "memory_dcac_vs_reference": dcac["peak_memory_bytes"] / reference["peak_memory_bytes"]
        if ok(reference) and ok(dcac)
        else None,
        "variants": rows,
        "model_flops": flops,
        "notes": [
            "model_flops: torch.utils.flop_counter count of one step of the size's dcac model without activation "
            "checkpointing and without the per-step VAE (see benchmarks/flops.py); tflops_per_s = images/s x "
            "model_flops.flops_per_image, the same count for every row, so rows compare as their images/s do; mfu = "
            "tflops_per_s / the device's dense bf16 peak (absent for devices not in flops.PEAK_BF16_DENSE_TFLOPS)",
            "official (with --official DIR): the official code's training step from that clone (official_step.py): its "
            "LDM UNet with loralib LoRA, VAE encoder every step, fp16 autocast + GradScaler on CUDA (fp32 on a CPU), its "
            "per-step .item() meter reads; random weights; its own tiny architecture at --tiny, so tiny ratios to it "
            "say nothing; speedup_vs_official / speedup_vs_v01: images/s over the official row's / the "
            "dcac+per_step_reads row's",
            "dcac+per_step_reads: dcac's default step plus reading its loss values back to the host after every "
            "step, as dcac v0.1's step did (its memory update's boolean selections waited for the device at the same "
            "point, the end of the step)",
            "images/s = batch x timed steps / wall time of the timed steps run back to back, synchronised with the "
            "device before and after (warm-up excluded), as the trainer runs them; step_ms_mean = that time / steps; "
            "synthetic batches already on the device, so data loading is not measured",
            "peak memory: CUDA max_memory_allocated from the first warm-up step on; on CPU the worker process's peak "
            "RSS, which includes building the models",
            "each variant runs in its own process with the same seed (same random weights and batches)",
            "the latent cache build (once per run) is timed apart: latent_cache_build_images_per_s",
            "probe_grad_diff: before timing, each variant computes the loss and every trainable tensor's gradient "
            "norm on the same batch with the same latents, timesteps and noise; the column is the largest relative "
            "difference from the dcac row (probe_grad_diff_vs_reference: from the reference row); variants in dcac's precision must stay at round-off (<~1e-2), "
            "rows in another precision show its round-off (~0.2 at tiny size), and a wrong or missing gradient "
            "gives ~1 (torch 2.13 CPU inductor with train.compile=true: 1.0, the compiled UNet's backward is wrong)",
            "on a CPU the reference's fp16 autocast runs as fp32 (requested_precision keeps the design's choice) "
            "unless --cpu-fp16: without fp16 arithmetic units, CPU fp16 is ~100x slower than fp32",
        ],
        "command": "python benchmarks/train_step.py " + " ".join(sys.argv[1:]),
    }


def _add_utilisation_and_speedups(rows, flops, env, official, v01) -> None:
    """TFLOP/s and MFU from the one model-FLOPs count, and images/s relative to the official code and to v0.1."""
    flops_per_image = flops.get("flops_per_image") if flops else None
    ok = lambda r: r is not None and r.get("status") == "ok"  # noqa: E731
    for row in rows:
        if row.get("status") != "ok":
            continue
        row.update(utilisation(row["images_per_s"], flops_per_image, (env or {}).get("device_name")))
        if ok(official):
            row["speedup_vs_official"] = row["images_per_s"] / official["images_per_s"]
        if ok(v01):
            row["speedup_vs_v01"] = row["images_per_s"] / v01["images_per_s"]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    size = _size(args)
    if args.worker:
        try:
            if args.worker == FLOPS_WORKER:
                result = _model_flops(size, args.device)
            elif args.worker == OFFICIAL_WORKER:
                from official_step import run_official

                result = run_official(
                    args.official, size.name, size.batch_size, size.num_ids, size.warmup, size.steps, args.device
                )
            else:
                result = run_variant(VARIANTS[args.worker], size, args.device, cpu_fp16=args.cpu_fp16)
        except Exception:  # noqa: BLE001 - the parent records the failure in the variant's row
            traceback.print_exc()
            return 1
        args.worker_out.write_text(json.dumps(result))
        return 0

    # Without --variants the set is named after the device, which the first worker reports (this process
    # does not import torch); every set starts with the reference.
    names = _variant_names(args.variants or "cpu")
    results: list[dict[str, Any]] = []
    out = args.out
    print(f"[train_step benchmark] {size.name}: counting the model FLOPs of a step ...", flush=True)
    flops = _run_worker(args, size, FLOPS_WORKER)
    print(
        f"  {flops['status']}"
        + (
            f": {flops['flops_per_image'] / 1e9:.4g} GFLOP per image"
            if flops["status"] == "ok"
            else f"\n{flops.get('error', '')}"
        ),
        flush=True,
    )
    official = None
    if args.official:
        print(f"[train_step benchmark] {size.name}: the official code in {args.official} ...", flush=True)
        official = _run_worker(args, size, OFFICIAL_WORKER)
        print(
            f"  {official['status']}"
            + (
                f": {official['images_per_s']:.3g} images/s"
                if official["status"] == "ok"
                else f"\n{official.get('error', '')}"
            ),
            flush=True,
        )
    while len(results) < len(names):
        name = names[len(results)]
        print(f"[train_step benchmark] {size.name}: {name} ...", flush=True)
        results.append(_run_worker(args, size, name))
        status = results[-1]["status"]
        print(
            f"  {status}"
            + (
                f": {results[-1]['images_per_s']:.3g} images/s"
                if status == "ok"
                else f"\n{results[-1].get('error', '')}"
            ),
            flush=True,
        )
        if args.variants is None and status == "ok" and results[-1]["environment"]["device"] == "cuda":
            names = _variant_names("cuda")
        # Rewritten after every variant, so an interrupted run keeps the rows it finished.
        summary = _summary(args, size, results, flops, official)
        out = (
            args.out
            or RESULTS_DIR
            / f"train_step_{result_slug(summary['environment'])}{'' if size.name == 'full' else '_' + size.name}.json"
        )
        write_json(out, {**summary, "complete": len(results) == len(names)})
    env = summary["environment"] or {}
    print(
        f"\n{size.name} size on {env.get('device_name', '?')} (torch {env.get('torch_version', '?')}), batch {size.batch_size}"
    )
    has_mfu = any(row.get("mfu") is not None for row in summary["variants"])
    print(format_table(summary["variants"], [c for c in _TABLE if has_mfu or c[0] != "mfu"]))
    if summary["speedup_dcac_vs_reference"] is not None:
        print(
            f"dcac vs reference: x{summary['speedup_dcac_vs_reference']:.2f} images/s, x{summary['memory_dcac_vs_reference']:.2f} peak memory"
        )
    print(f"wrote {out}")
    return 0 if all(r["status"] == "ok" for r in [*results, flops, *([official] if official else [])]) else 1


if __name__ == "__main__":
    sys.exit(main())
