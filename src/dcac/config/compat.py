"""``train.compat=official``: what a run changes to compute what the official DCAC code computed.

The default (``none``) is the clean method. ``official`` turns on, together, the official code's behaviours
that are not part of the method as the paper describes it (the README section "Differences from the official
code" lists each with its measured size):

* BNNeck running statistics updated twice per training step (``dcac.models.dcac.DCAC``, ``bnneck_twice``);
* frozen random biases on the UNet's attn1/attn2 ``to_q/to_k/to_v``, drawn from ``train.seed``
  (``dcac.models.lora.add_frozen_qkv_biases``);
* bilinear test-time resize for single-source runs (:func:`eval_interpolation`);
* fp16 autocast with a GradScaler, PCL logits in fp16 and the VAE re-encoding every batch under autocast
  (``dcac.engine.train_step``; ``DCACConfig.checked_and_resolved`` sets ``train.mixed_precision=fp16`` and
  ``diffusion.cache_latents=false``).
"""

from __future__ import annotations

from dcac.config.schema import DCACConfig


def is_official(config: DCACConfig) -> bool:
    return config.train.compat == "official"


def eval_interpolation(config: DCACConfig) -> str:
    """Resize filter of the query/gallery images: bicubic, except bilinear for official single-source runs.

    The official code evaluates a single-source run with a loader built without an interpolation argument
    (torchvision's default, bilinear); multi-source evaluation and the memory-rebuild loader use bicubic.
    """
    return "bilinear" if is_official(config) and len(config.data.sources) == 1 else "bicubic"
