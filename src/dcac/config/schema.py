"""Typed configuration for a DCAC run.

Every default is the paper's recipe; a preset YAML (``dcac/config/presets/*.yaml``) overrides only
what its setting changes, and ``key=value`` overrides from the command line go on top.  The config is a
tree of dataclasses so a typo is an error that names the key, not a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from dcac.config import choices


class ConfigError(ValueError):
    """A config file, preset name or override that cannot be used; the message names the key."""


@dataclass
class DataConfig:
    root: str = "data"  # folder holding the datasets (one subfolder each)
    sources: list[str] = field(default_factory=lambda: ["market1501"])
    targets: list[str] = field(default_factory=lambda: ["msmt17"])
    all_splits: bool = False  # train on train+query+gallery of the sources
    # Per-dataset loader options, keyed by dataset name (or a user's dataset's folder name), e.g.
    # data.options.msmt17.use_val=false, data.options.cuhk03.variant=labeled, data.options.grid.split=3,
    # data.options.shop_a.layout=folders. Sources and targets may be paths to a user's own datasets.
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    height: int = 256
    width: int = 128
    diffusion_size: int = 128  # the un-augmented square view the VAE encodes
    batch_size: int = 64  # global batch: P identities x K instances
    num_instances: int = 4  # K
    num_workers: int = 4
    test_batch_size: int = 256
    on_corrupt: str = "raise"  # raise | skip (skip and count unreadable images)
    flip_p: float = 0.5
    padding: int = 10
    erasing_p: float = 0.5
    # Where the training augmentation runs: "loader" (per image, in the workers) or "device" (the workers only
    # decode and resize; the step augments the batch on the GPU, equal in distribution): for when decoding
    # and augmenting cannot keep up with the step (benchmarks/data_loading.py measures both).
    augment_on: str = "loader"


@dataclass
class EncoderConfig:
    preset: str = "vit_b16"  # vit_b16 | tiny
    weights: str | None = None  # HF CLIP folder or OpenAI ViT-B-16.pt; None = random init
    freeze_patch_embed: bool = True
    # Recompute each ViT layer in the backward pass instead of keeping its activations: less memory for some
    # speed (benchmarks/README.md measures both).
    gradient_checkpointing: bool = True


@dataclass
class DiffusionConfig:
    preset: str = "sd15"  # sd15 | tiny
    weights: str | None = None  # diffusers folder or v1-5-pruned.ckpt/.safetensors; None = random init
    mode: str = "lora"  # lora | full | frozen
    lora_rank: int = choices.LORA_RANK
    lora_alpha: float = choices.LORA_ALPHA
    single_token_attention: bool = True
    gradient_checkpointing: bool = False
    cache_latents: bool = True  # encode each image's VAE posterior once (the view is not augmented)


@dataclass
class ConditioningConfig:
    variant: str = "correlation"  # correlation | hard | instance | none
    prob_source: str = "fc"  # fc | memory | both
    temperature: float = 1.0  # tau in p = softmax(z / tau)

    @property
    def has_teacher(self) -> bool:
        """Whether the run trains with the diffusion teacher (every variant but the baseline's ``none``)."""
        return self.variant != choices.NO_TEACHER


@dataclass
class LossConfig:
    id_weight: float = 1.0
    pcl_weight: float = 1.0
    diffusion_weight: float = 1.0
    label_smoothing: float = 0.1
    pcl_temperature: float = choices.PCL_TEMPERATURE
    pcl_momentum: float = choices.PCL_MOMENTUM
    pcl_update: str = choices.PCL_UPDATE  # hard | mean


@dataclass
class OptimConfig:
    lr: float = 5e-6
    weight_decay: float = 1e-4
    diffusion_lr_mult: float = 1.0  # multiplier for prompts, projection and UNet parameters
    epochs: int = 60
    warmup_epochs: int = 10
    warmup_factor: float = 0.1
    milestones: list[int] = field(default_factory=lambda: [30, 50])
    gamma: float = 0.1


@dataclass
class EvalConfig:
    after_bn: bool = True  # test feature: f_bn (True) or f (False)
    # Flip test: average each test image's feature with its horizontal mirror's (not in the paper's protocol).
    flip_test: bool = False
    metric: str = "euclidean"  # euclidean | cosine
    rerank: bool = False
    k1: int = 50
    k2: int = 15
    lambda_value: float = 0.3
    max_rank: int = 50


@dataclass
class TrainConfig:
    output_dir: str = "runs/dcac"
    seed: int = 0
    mixed_precision: str = "bf16"  # bf16 | fp16 | fp32 (fp32 = no autocast)
    eval_every: int = 0  # epochs; 0 = only at the end (the paper's protocol)
    checkpoint_every: int = 1  # epochs
    log_every: int = 10  # steps
    max_steps_per_epoch: int = 0  # 0 = the sampler's full epoch; >0 caps it (smoke runs)
    sync_bn: bool = False
    progress: bool = True
    # Speed switches (mathematically neutral; benchmarks/train_step.py measures each one).
    # torch.compile the Re-ID model and the UNet: auto = on CUDA devices only (the fastest step there; torch
    # 2.13's CPU inductor gets the UNet's gradients wrong, so auto never compiles on the CPU). auto | true | false.
    compile: str = "auto"
    channels_last: bool = False  # channels-last memory format for the UNet and VAE convolutions
    # Store the frozen UNet Linear/Conv weights in the bf16/fp16 autocast dtype: bit-identical results (autocast
    # casts them at every call anyway), half their memory and no per-step cast copies. No effect under fp32.
    frozen_weights_in_autocast_dtype: bool = True
    # none = the clean method; official = reproduce the official code as it ran (README "Differences from the
    # official code"): BNNeck statistics updated twice per step, frozen random q/k/v biases in the UNet,
    # bilinear test resize for single-source runs, fp16 autocast with a GradScaler and fp16 PCL logits, VAE
    # re-encoded every step. It sets train.mixed_precision=fp16 and diffusion.cache_latents=false.
    compat: str = "none"
    # A run folder to start from (e.g. written by ``dcac import``): its Re-ID weights and, when it has
    # teacher_init.safetensors, the teacher's LoRA and ID prompts. None = the usual start.
    init_from: str | None = None


@dataclass
class DCACConfig:
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def checked_and_resolved(self) -> DCACConfig:
        """Refuse a bad value (one line naming its key), and set what the values imply: ``train.compat=official``
        runs fp16 without the latent cache, ``train.compile`` becomes a string. Returns ``self``."""
        _check_choice("encoder.preset", self.encoder.preset, choices.ENCODER_PRESETS)
        _check_choice("diffusion.preset", self.diffusion.preset, choices.DIFFUSION_PRESETS)
        _check_choice("diffusion.mode", self.diffusion.mode, choices.UNET_TRAINING_MODES)
        _check_choice("conditioning.variant", self.conditioning.variant, choices.CONDITIONING_VARIANTS)
        _check_choice("conditioning.prob_source", self.conditioning.prob_source, choices.PROBABILITY_SOURCES)
        _check_choice("loss.pcl_update", self.loss.pcl_update, choices.PCL_UPDATE_MODES)
        _check_choice("train.mixed_precision", self.train.mixed_precision, choices.MIXED_PRECISIONS)
        _check_choice("train.compat", self.train.compat, choices.COMPAT_MODES)
        if self.train.compat == "official":
            # The official code ran fp16 autocast and encoded every batch with the VAE.
            self.train.mixed_precision, self.diffusion.cache_latents = "fp16", False
        self.train.compile = str(self.train.compile).lower()  # YAML/CLI booleans arrive as True/False
        _check_choice("train.compile", self.train.compile, ("auto", "true", "false"))
        _check_choice("eval.metric", self.eval.metric, ("euclidean", "cosine"))
        _check_choice("data.on_corrupt", self.data.on_corrupt, ("raise", "skip"))
        _check_choice("data.augment_on", self.data.augment_on, choices.AUGMENT_PLACES)
        for key, value in (
            ("data.num_instances", self.data.num_instances),
            ("data.batch_size", self.data.batch_size),
            ("optim.epochs", self.optim.epochs),
        ):
            if value < 1:
                raise ConfigError(f"{key} must be >= 1, got {value}")
        if self.data.batch_size % self.data.num_instances:
            raise ConfigError(
                f"data.batch_size ({self.data.batch_size}) must be a multiple of data.num_instances "
                f"({self.data.num_instances}): a batch is P identities x K images"
            )
        if not self.data.sources:
            raise ConfigError("data.sources is empty: name at least one training dataset")
        if self.conditioning.temperature <= 0:
            raise ConfigError(f"conditioning.temperature must be > 0, got {self.conditioning.temperature}")
        if self.diffusion.lora_rank < 1:
            raise ConfigError(f"diffusion.lora_rank must be >= 1, got {self.diffusion.lora_rank}")
        if self.loss.pcl_temperature <= 0:
            raise ConfigError(f"loss.pcl_temperature must be > 0, got {self.loss.pcl_temperature}")
        if not 0.0 <= self.loss.pcl_momentum <= 1.0:
            raise ConfigError(f"loss.pcl_momentum must lie in [0, 1], got {self.loss.pcl_momentum}")
        return self

    def to_yaml(self) -> str:
        return OmegaConf.to_yaml(OmegaConf.structured(self))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_choice(key: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(choices)}")


def preset_names() -> list[str]:
    """Names of the YAML presets shipped in ``dcac/config/presets``."""
    folder = resources.files("dcac.config") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _preset_path(name: str) -> Path:
    path = Path(str(resources.files("dcac.config") / "presets" / f"{name}.yaml"))
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(preset_names())}")
    return path


def _read_yaml(path: Path):
    try:
        return OmegaConf.load(path)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML: {problem}{where}") from None


def _merge_file(schema, path: Path):
    raw = _read_yaml(path)
    # A preset may name another one to start from (``base: ma_to_ms``) so settings stay one-line diffs.
    base = raw.pop("base", None) if isinstance(raw, dict) or OmegaConf.is_dict(raw) else None
    if base is not None:
        schema = _merge_file(schema, _resolve_config_path(str(base)))
    try:
        return OmegaConf.merge(schema, raw)
    except (ConfigKeyError, ValidationError) as err:
        raise ConfigError(f"{path}: {str(err.msg).splitlines()[0]}") from None


def _resolve_config_path(preset_or_file: str) -> Path:
    path = Path(preset_or_file)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    return _preset_path(preset_or_file)


def load_config(preset_or_file: str | None = None, overrides: Sequence[str] = ()) -> DCACConfig:
    """Build a config from the defaults, an optional preset name or YAML file, and ``key=value`` overrides.

    Unknown keys are errors that name the key (``ConfigError``).
    """
    schema = OmegaConf.structured(DCACConfig)
    if preset_or_file:
        schema = _merge_file(schema, _resolve_config_path(preset_or_file))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.lr=1e-5)")
        key = item.split("=", 1)[0]
        try:
            schema = OmegaConf.merge(schema, OmegaConf.from_dotlist([item]))
        except (ConfigKeyError, ValidationError) as err:
            raise ConfigError(
                f"override {item!r}: unknown key or wrong type for {key!r} ({str(err.msg).splitlines()[0]})"
            ) from None
    config: DCACConfig = OmegaConf.to_object(schema)
    return config.checked_and_resolved()


def config_from_dict(data: dict[str, Any], *, source: str = "<dict>") -> DCACConfig:
    """Rebuild a config saved with a run (``config.yaml``), checking every key."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(DCACConfig), OmegaConf.create(data))
    except (ConfigKeyError, ValidationError) as err:
        raise ConfigError(f"{source}: {err}") from None
    return OmegaConf.to_object(merged).checked_and_resolved()


def load_run_config(path: str | Path) -> DCACConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"run config not found: {path}")
    return config_from_dict(OmegaConf.to_container(_read_yaml(path)), source=str(path))
