"""The named choices and shared defaults of a DCAC run, defined once.

``dcac.config.schema`` validates a config against these tuples and the modules that implement each choice accept
the same tuples, so adding a variant is one edit here plus its implementation. Nothing here imports torch:
the config stays cheap to load.
"""

from __future__ import annotations

#: Conditioning variants the conditioner implements (see ``dcac.models.conditioning``).
CONDITIONER_VARIANTS = ("correlation", "hard", "instance")
#: ``conditioning.variant`` of the baseline: no diffusion teacher and no conditioner at all.
NO_TEACHER = "none"
CONDITIONING_VARIANTS = CONDITIONER_VARIANTS + (NO_TEACHER,)
#: Where the correlation variant's mixing probabilities come from: the classifier, the PCL memory, or both.
PROBABILITY_SOURCES = ("fc", "memory", "both")

#: Which UNet parameters train (see ``dcac.models.lora.set_unet_training_mode``).
UNET_TRAINING_MODES = ("lora", "full", "frozen")
DIFFUSION_PRESETS = ("sd15", "tiny")
ENCODER_PRESETS = ("vit_b16", "tiny")

#: How the PCL memory moves after each step (see ``dcac.losses.pcl.PrototypeMemory``).
PCL_UPDATE_MODES = ("hard", "mean")

MIXED_PRECISIONS = ("bf16", "fp16", "fp32")
#: ``data.augment_on``: the training augmentation per image in the loader, or per batch on the step's device.
AUGMENT_PLACES = ("loader", "device")
#: ``train.compat``: ``none`` is the clean method; ``official`` reproduces the official code's accidents
#: (see ``dcac.config.compat`` and the README section "Differences from the official code").
COMPAT_MODES = ("none", "official")

# Defaults of the paper's recipe that both the config and the modules' signatures use.
LORA_RANK = 8
LORA_ALPHA = 1.0
PCL_TEMPERATURE = 0.01
PCL_MOMENTUM = 0.2
PCL_UPDATE = "hard"
