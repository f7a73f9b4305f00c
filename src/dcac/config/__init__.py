"""dcac.config: what a run is set to. The typed schema and its loading (``schema``: presets, YAML files,
``key=value`` overrides), the named choices and shared defaults (``choices``), the ``train.compat=official``
rules (``compat``) and the shipped presets (``presets/*.yaml``).

Nothing here imports torch: a config stays cheap to load.
"""

from dcac.config.schema import (
    ConditioningConfig,
    ConfigError,
    DataConfig,
    DCACConfig,
    DiffusionConfig,
    EncoderConfig,
    EvalConfig,
    LossConfig,
    OptimConfig,
    TrainConfig,
    config_from_dict,
    load_config,
    load_run_config,
    preset_names,
)

__all__ = [
    "ConditioningConfig",
    "ConfigError",
    "DataConfig",
    "DCACConfig",
    "DiffusionConfig",
    "EncoderConfig",
    "EvalConfig",
    "LossConfig",
    "OptimConfig",
    "TrainConfig",
    "config_from_dict",
    "load_config",
    "load_run_config",
    "preset_names",
]
