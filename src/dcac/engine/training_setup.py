"""Building what a training step needs, shared by the trainer and the training-step benchmark.

    build the model -> (a benchmark's changes) -> speed switches -> Adam -> [resume] -> accelerator.prepare

so the benchmark measures exactly the model and optimiser that training runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs

from dcac.config import DCACConfig, TrainConfig
from dcac.engine.optim import build_optimizer
from dcac.models.build import build_dcac
from dcac.models.dcac import DCAC
from dcac.models.frozen_weights import store_frozen_weights_in

#: Pass to ``Accelerator(kwargs_handlers=[DDP_KWARGS])``: tolerate trainable parameters a step does not use.
#: With single-token cross-attention the UNet never calls ``attn2.to_q``/``to_k`` (softmax over one key is 1),
#: so their LoRA matrices get no gradient, and DDP without ``find_unused_parameters`` stops at the second step.
DDP_KWARGS = DistributedDataParallelKwargs(find_unused_parameters=True)

#: The autocast dtype of each ``train.mixed_precision`` (fp32 = no autocast).
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def compile_enabled(train: TrainConfig, device: torch.device | str) -> bool:
    """``train.compile`` resolved for a device: auto compiles on CUDA only (see TrainConfig.compile)."""
    return train.compile == "true" or (train.compile == "auto" and torch.device(device).type == "cuda")


def apply_speed_switches(model: DCAC, train: TrainConfig, device: torch.device | str) -> None:
    """Apply ``train.frozen_weights_in_autocast_dtype``, ``train.channels_last`` and ``train.compile`` to a
    built model that will train on ``device``, before ``accelerator.prepare``.

    Each changes how the same mathematics runs, never what it computes. ``Module.compile`` compiles in place,
    so parameter names (checkpoints, optimiser groups) stay those of the eager model.
    """
    autocast_dtype = AUTOCAST_DTYPES[train.mixed_precision]
    if train.frozen_weights_in_autocast_dtype and autocast_dtype is not None and model.teacher is not None:
        store_frozen_weights_in(model.teacher.unet, autocast_dtype)
    if train.channels_last and model.teacher is not None:
        model.teacher.unet.to(memory_format=torch.channels_last)
        model.teacher.vae.to(memory_format=torch.channels_last)
    if compile_enabled(train, device):
        model.reid.compile()
        if model.teacher is not None:
            model.teacher.unet.compile()


#: accelerate's name for each ``train.mixed_precision``.
MIXED_PRECISION = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}


def make_accelerator(train: TrainConfig, *, cpu: bool | None = None) -> Accelerator:
    """The run's accelerator: ``train.mixed_precision``, DDP settings; the CPU when no GPU is there (or ``cpu``).

    ``train.compat=official`` runs fp16 autocast and loss scaling in the train step itself, on any device.
    """
    return Accelerator(
        mixed_precision="no" if train.compat == "official" else MIXED_PRECISION[train.mixed_precision],
        cpu=not torch.cuda.is_available() if cpu is None else cpu,
        kwargs_handlers=[DDP_KWARGS],
    )


def build_model_and_optimizer(
    config: DCACConfig,
    num_ids: int,
    device: torch.device,
    *,
    fused_adam: bool = True,
    customize: Callable[[DCAC], None] | None = None,
) -> tuple[DCAC, torch.optim.Optimizer]:
    """The DCAC model with the configured speed switches applied, and its Adam (fused on CUDA if ``fused_adam``).

    ``customize`` changes the built model before the switches (the benchmark swaps attention processors).
    """
    model = build_dcac(config, num_ids)
    if customize is not None:
        customize(model)
    apply_speed_switches(model, config.train, device)
    optimizer = build_optimizer(model, config.optim, fused=fused_adam and device.type == "cuda")
    return model, optimizer


def prepare_for_training(
    accelerator: Accelerator, model: DCAC, optimizer: torch.optim.Optimizer, *, sync_bn: bool = False
) -> tuple[torch.nn.Module, torch.optim.Optimizer, DCAC]:
    """Hand model and optimiser to accelerate; returns (possibly DDP-wrapped model, optimiser, plain DCAC)."""
    if sync_bn and accelerator.num_processes > 1:
        if accelerator.device.type == "cpu":
            raise ValueError("train.sync_bn=true needs GPU processes: torch's SyncBatchNorm does not run on CPU")
        model.reid = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.reid)
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    return wrapped, optimizer, accelerator.unwrap_model(wrapped)
