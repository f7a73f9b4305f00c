"""Correlation-aware conditioning: the per-image context vector fed to the diffusion UNet.

DCAC's contribution: learnable ID-wise prompts P (N_ids x D, D = the UNet's cross-attention
width) mixed by the classifier's softened probabilities, c = softmax(z / tau) P. The diffusion
loss then back-propagates through c into the logits and so into the Re-ID encoder.

Variants (one switch, for ablations):

* ``correlation`` -- c = p P with p from the probability source:
  ``fc`` (p = softmax(logits / tau)), ``memory`` (p = softmax(M v / T), where the caller passes
  the PCL memory logits M v / T with the PCL temperature T already applied, so tau does not act
  on them), or ``both`` (the mean of the two probability vectors);
* ``hard`` -- c = P[y], the prompt of the true identity (no gradient into the logits);
* ``instance`` -- c = normalise(f_bn) Q, the unit BNNeck feature times a learned dim x D matrix Q
  (initialised N(0, 1), no bias), as the official code's ``feature`` probability type.

The baseline without a teacher has no conditioner at all (``conditioning.variant=none``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dcac.config.choices import CONDITIONER_VARIANTS, PROBABILITY_SOURCES


class IDConditioner(nn.Module):
    """Maps Re-ID outputs (logits, labels or features) to one UNet context vector per image."""

    def __init__(
        self,
        num_ids: int,
        context_dim: int = 768,
        feat_dim: int = 512,
        variant: str = "correlation",
        prob_source: str = "fc",
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if variant not in CONDITIONER_VARIANTS:
            raise ValueError(f"unknown conditioning variant {variant!r}; expected one of {CONDITIONER_VARIANTS}")
        if prob_source not in PROBABILITY_SOURCES:
            raise ValueError(f"unknown probability source {prob_source!r}; expected one of {PROBABILITY_SOURCES}")
        if temperature <= 0:
            raise ValueError(f"conditioning temperature must be > 0, got {temperature}")
        if num_ids < 1 or context_dim < 1 or feat_dim < 1:
            raise ValueError(f"num_ids, context_dim, feat_dim must be >= 1, got {num_ids}, {context_dim}, {feat_dim}")
        self.num_ids = num_ids
        self.context_dim = context_dim
        self.variant = variant
        self.prob_source = prob_source
        self.temperature = temperature
        if variant in ("correlation", "hard"):
            self.prompts = nn.Parameter(torch.randn(num_ids, context_dim))
        else:
            self.projection = nn.Parameter(torch.randn(feat_dim, context_dim))

    @property
    def needs_memory_logits(self) -> bool:
        """Whether :meth:`forward` reads the PCL memory logits (the correlation variant's memory sources)."""
        return self.variant == "correlation" and self.prob_source != "fc"

    def extra_repr(self) -> str:
        return (
            f"num_ids={self.num_ids}, context_dim={self.context_dim}, variant={self.variant}, "
            f"prob_source={self.prob_source}, temperature={self.temperature}"
        )

    def forward(
        self,
        *,
        logits: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        feat_bn: torch.Tensor | None = None,
        memory_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The B x context_dim context; each variant reads only the inputs it needs."""
        if self.variant == "correlation":
            return self.probabilities(logits=logits, memory_logits=memory_logits) @ self.prompts
        if self.variant == "hard":
            labels = _required(labels, "labels", self.variant)
            if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_ids):
                raise ValueError(f"labels must lie in [0, {self.num_ids}), got range [{labels.min()}, {labels.max()}]")
            return self.prompts[labels]
        feat_bn = _required(feat_bn, "feat_bn", self.variant)
        return F.normalize(feat_bn.to(self.projection.dtype), dim=1) @ self.projection

    def probabilities(
        self, *, logits: torch.Tensor | None = None, memory_logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """B x num_ids mixing weights p of the correlation variant (softmax in float32).

        tau softens the classifier only; the memory logits already carry the PCL temperature.
        """
        if self.prob_source == "fc":
            return torch.softmax(self._checked(logits, "logits").float() / self.temperature, dim=1)
        if self.prob_source == "memory":
            return torch.softmax(self._checked(memory_logits, "memory_logits").float(), dim=1)
        p_fc = torch.softmax(self._checked(logits, "logits").float() / self.temperature, dim=1)
        p_memory = torch.softmax(self._checked(memory_logits, "memory_logits").float(), dim=1)
        return (p_fc + p_memory) / 2

    def _checked(self, source: torch.Tensor | None, name: str) -> torch.Tensor:
        source = _required(source, name, f"{self.variant}/{self.prob_source}")
        if source.ndim != 2 or source.shape[1] != self.num_ids:
            raise ValueError(f"{name} must be B x {self.num_ids}, got {tuple(source.shape)}")
        return source


def _required(value: torch.Tensor | None, name: str, variant: str) -> torch.Tensor:
    if value is None:
        raise ValueError(f"conditioning variant {variant!r} needs {name}")
    return value
