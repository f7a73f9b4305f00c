"""The CLIP ViT image tower used as the Re-ID backbone, on non-square (H×W) person crops.

CLIP's vision transformer is pre-trained on square 224×224 images (a 14×14 patch grid). Re-ID uses
256×128 crops, i.e. a 16×8 grid, so the positional embedding has (H/p)·(W/p)+1 entries instead of
(224/p)²+1. transformers' ``CLIPVisionEmbeddings`` hard-codes a square grid (and would re-interpolate
the table bicubically on every call), so this module owns a small embedding layer with a table of
the right size and reuses transformers' ``CLIPEncoder`` for the transformer blocks.

Parameter names follow transformers' ``CLIPVisionModel`` (``embeddings.*``, ``pre_layrnorm``,
``encoder.layers.N.*``, ``post_layernorm``) plus ``visual_projection`` from
``CLIPVisionModelWithProjection``, so Hugging Face checkpoints map onto it by stripping a prefix
(see :mod:`dcac.models.clip_weights`).
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import CLIPVisionConfig
from transformers.models.clip.modeling_clip import CLIPEncoder


@dataclass
class ReIDEncoderConfig:
    """Architecture of the CLIP image tower, at the Re-ID input size ``image_size`` = (H, W)."""

    image_size: tuple[int, int] = (256, 128)
    patch_size: int = 16
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    projection_dim: int = 512
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"
    freeze_patch_embed: bool = True
    attn_implementation: str = "sdpa"

    def __post_init__(self) -> None:
        # Accept lists (from YAML/JSON) but store a tuple so configs compare and hash predictably.
        self.image_size = tuple(int(s) for s in self.image_size)
        if len(self.image_size) != 2:
            raise ValueError(f"ReIDEncoderConfig.image_size must be (H, W), got {self.image_size}")
        height, width = self.image_size
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"ReIDEncoderConfig.image_size {self.image_size} must be divisible by patch_size {self.patch_size}"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"ReIDEncoderConfig.hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}"
            )

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch-token grid (rows, columns)."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def num_positions(self) -> int:
        """Token count: one per patch plus the class token."""
        rows, cols = self.grid_size
        return rows * cols + 1

    @classmethod
    def vit_b16(cls, image_size: tuple[int, int] = (256, 128)) -> ReIDEncoderConfig:
        """CLIP ViT-B/16 (the paper's backbone)."""
        return cls(image_size=image_size)

    @classmethod
    def tiny(cls, image_size: tuple[int, int] = (64, 32), **overrides: Any) -> ReIDEncoderConfig:
        """A tower of ~0.1 M parameters with the same structure, for tests and CPU demos."""
        config = cls(
            image_size=image_size,
            patch_size=16,
            hidden_size=64,
            num_layers=2,
            num_heads=2,
            intermediate_size=128,
            projection_dim=32,
        )
        return dataclasses.replace(config, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for checkpoints (``ReIDEncoderConfig(**d)`` restores it)."""
        data = dataclasses.asdict(self)
        data["image_size"] = list(self.image_size)
        return data

    def to_clip_vision_config(self) -> CLIPVisionConfig:
        """The transformers config describing the same transformer blocks.

        ``image_size`` there is only used by transformers' own square embedding layer, which this
        encoder does not use; it is set to H for completeness.
        """
        vision_config = CLIPVisionConfig(
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            projection_dim=self.projection_dim,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            image_size=self.image_size[0],
            patch_size=self.patch_size,
            hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps,
            attention_dropout=0.0,
        )
        # CLIPEncoder is used outside a PreTrainedModel, which is what normally resolves the
        # attention backend; without this the blocks silently fall back to eager attention.
        vision_config._attn_implementation = self.attn_implementation
        return vision_config


class ReIDPatchEmbeddings(nn.Module):
    """Patch embedding + class token + a learned positional table for an (H/p)×(W/p) grid."""

    def __init__(self, config: ReIDEncoderConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.patch_embedding = nn.Conv2d(3, width, kernel_size=config.patch_size, stride=config.patch_size, bias=False)
        # OpenAI CLIP initialises both tables with std width**-0.5; random-weight models
        # (tests, demos, training from scratch) start from the same scale.
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.position_embedding = nn.Embedding(config.num_positions, width)
        nn.init.normal_(self.position_embedding.weight, std=scale)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        class_token = self.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1)
        tokens = torch.cat([class_token, patches], dim=1)
        return tokens + self.position_embedding.weight.to(tokens.dtype)


class CLIPReIDEncoder(nn.Module):
    """CLIP ViT image tower returning the projected class token ``f`` (B × projection_dim)."""

    def __init__(self, config: ReIDEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = ReIDPatchEmbeddings(config)
        self.pre_layrnorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.encoder = CLIPEncoder(config.to_clip_vision_config())
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.visual_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)
        nn.init.normal_(self.visual_projection.weight, std=config.hidden_size**-0.5)
        if config.freeze_patch_embed:
            self.embeddings.patch_embedding.weight.requires_grad_(False)
        # Recompute each transformer layer in the backward pass instead of keeping its activations
        # (a training-time switch, not part of the architecture: see enable_gradient_checkpointing).
        self.gradient_checkpointing = False
        # transformers < 5 layers take a causal-mask argument and return a tuple; >= 5 return the tensor.
        takes_causal_mask = "causal_attention_mask" in inspect.signature(self.encoder.layers[0].forward).parameters
        self._layer_masks = (None, None) if takes_causal_mask else (None,)

    def enable_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Keep only each layer's input during training and recompute the layer for its backward pass."""
        self.gradient_checkpointing = enabled

    def _checkpointed_layers(self, hidden: torch.Tensor) -> torch.Tensor:
        for layer in self.encoder.layers:
            out = checkpoint(layer, hidden, *self._layer_masks, use_reentrant=False)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        expected = (3, *self.config.image_size)
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"CLIPReIDEncoder expects pixel_values of shape (B, {expected[0]}, {expected[1]}, "
                f"{expected[2]}), got {tuple(pixel_values.shape)}"
            )
        hidden = self.pre_layrnorm(self.embeddings(pixel_values))
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            hidden = self._checkpointed_layers(hidden)
        else:
            hidden = self.encoder(inputs_embeds=hidden).last_hidden_state
        class_token = self.post_layernorm(hidden[:, 0])
        return self.visual_projection(class_token)

    @staticmethod
    def resize_position_embedding(
        position_embedding: torch.Tensor,
        new_grid: tuple[int, int],
        old_grid: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Resize a (1 + rows·cols, D) positional table to ``new_grid``, keeping the class token.

        Bilinear with ``align_corners=False``, as CLIP-ReID's ``resize_pos_embed``. ``old_grid``
        defaults to the square grid implied by the table (CLIP's pre-trained tables are square).
        The result has the input's dtype; interpolation runs in float32 so half-precision
        checkpoints are resized as accurately as full-precision ones.
        """
        if position_embedding.ndim != 2:
            raise ValueError(f"position embedding must be (1 + rows*cols, D), got {tuple(position_embedding.shape)}")
        num_patches = position_embedding.shape[0] - 1
        if old_grid is None:
            side = round(num_patches**0.5)
            if side * side != num_patches:
                raise ValueError(
                    f"position embedding with {num_patches} patch entries is not a square grid; "
                    "pass old_grid=(rows, cols)"
                )
            old_grid = (side, side)
        if old_grid[0] * old_grid[1] != num_patches:
            raise ValueError(f"old_grid {tuple(old_grid)} does not match {num_patches} patch entries")
        class_entry, patch_entries = position_embedding[:1], position_embedding[1:]
        dim = position_embedding.shape[1]
        grid = patch_entries.float().reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=tuple(new_grid), mode="bilinear", align_corners=False)
        patch_entries = grid.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], dim)
        return torch.cat([class_entry, patch_entries.to(position_embedding.dtype)], dim=0)
