"""The deployable Re-ID model: CLIP image tower → BNNeck → ID classifier.

``f`` (the projected class token) feeds the metric losses; ``f_bn = BN(f)`` feeds the classifier and is,
L2-normalised, the default test-time feature (docs/method.md §1).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dcac.models.reid_encoder import CLIPReIDEncoder, ReIDEncoderConfig


class ReIDOutput(NamedTuple):
    """Forward result. ``logits`` is None for a model built without a classifier."""

    feat: torch.Tensor
    feat_bn: torch.Tensor
    logits: torch.Tensor | None


class ReIDModel(nn.Module):
    """Encoder + BNNeck + bias-free ID classifier (``num_ids=0``: no classifier, inference only)."""

    def __init__(self, encoder_config: ReIDEncoderConfig, num_ids: int) -> None:
        super().__init__()
        if num_ids < 0:
            raise ValueError(f"num_ids must be >= 0, got {num_ids}")
        self.config = encoder_config
        self.num_ids = num_ids
        self.encoder = CLIPReIDEncoder(encoder_config)
        feat_dim = encoder_config.projection_dim
        self.bottleneck = nn.BatchNorm1d(feat_dim)
        nn.init.ones_(self.bottleneck.weight)
        nn.init.zeros_(self.bottleneck.bias)
        # BNNeck: a frozen zero shift keeps f_bn centred, so the softmax classifier and the
        # cosine test-time metric see the same geometry.
        self.bottleneck.bias.requires_grad_(False)
        self.classifier: nn.Linear | None = None
        if num_ids > 0:
            self.classifier = nn.Linear(feat_dim, num_ids, bias=False)
            nn.init.normal_(self.classifier.weight, std=0.001)

    @property
    def feat_dim(self) -> int:
        return self.config.projection_dim

    def forward(self, pixel_values: torch.Tensor) -> ReIDOutput:
        feat = self.encoder(pixel_values)
        feat_bn = self.bottleneck(feat)
        logits = self.classifier(feat_bn) if self.classifier is not None else None
        return ReIDOutput(feat=feat, feat_bn=feat_bn, logits=logits)

    def extract(self, pixel_values: torch.Tensor, after_bn: bool = True, flip: bool = False) -> torch.Tensor:
        """L2-normalised float32 retrieval features: ``f_bn`` (default) or ``f`` (``after_bn=False``).

        ``flip`` (the flip test): the mean of the image's and its horizontal mirror's feature, normalised
        after averaging (as fast-reid and torchreid do); both go through the encoder as one batch.
        """
        batch = pixel_values.shape[0]
        feat = self.encoder(torch.cat([pixel_values, pixel_values.flip(-1)]) if flip else pixel_values)
        if after_bn:
            feat = self.bottleneck(feat)
        if flip:
            feat = (feat[:batch].float() + feat[batch:].float()) / 2
        return F.normalize(feat.float(), dim=1)
