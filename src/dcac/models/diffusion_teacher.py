"""The Stable Diffusion teacher: frozen VAE, (LoRA-)adapted UNet, and the denoising loss.

The teacher exists only at training time. Images (un-augmented, 128x128, in [-1, 1]) are
encoded once by the frozen VAE into a Gaussian posterior; each step draws a latent sample from it
(x the VAE config's ``scaling_factor``, 0.18215 for SD v1.5), noises it at a uniform random timestep of the DDPM schedule, and asks the UNet,
conditioned on one context token per image, to predict the noise. The MSE between prediction
and target back-propagates into the context and from there into the Re-ID model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch import nn

from dcac.config.choices import DIFFUSION_PRESETS, LORA_ALPHA, LORA_RANK, UNET_TRAINING_MODES
from dcac.models.lora import add_frozen_qkv_biases, add_unet_lora, set_unet_training_mode
from dcac.models.sd_configs import preset_configs
from dcac.models.sd_weights import build_unet, build_vae, load_stable_diffusion
from dcac.models.single_token_attention import install_single_token_attention

PREDICTION_TYPES = ("epsilon", "v_prediction")


@dataclass
class DiffusionTeacherConfig:
    """How to build the teacher, independent of a run's config (``dcac.models.build.build_teacher`` translates
    a run's ``diffusion`` section into one).

    ``preset`` names the UNet/VAE architecture; ``weights`` (None = random init) is a diffusers folder or a
    single ``.ckpt``/``.safetensors`` file; ``mode`` says which UNet parameters train (LoRA of ``lora_rank``
    and ``lora_alpha``, all, or none). Explicit `unet_config` / `vae_config` override the preset's. ``qkv_bias_seed`` (None = none) adds the
    official code's frozen random biases to the attn1/attn2 ``to_q/to_k/to_v`` projections (LoRA mode only;
    see :func:`dcac.models.lora.add_frozen_qkv_biases`). ``encode_under_autocast`` runs the VAE encoder under
    the caller's autocast, as the official code does, instead of in the VAE's own dtype.
    """

    preset: str = "sd15"
    weights: str | None = None
    mode: str = "lora"
    lora_rank: int = LORA_RANK
    lora_alpha: float = LORA_ALPHA
    single_token_attention: bool = True
    gradient_checkpointing: bool = False
    unet_config: dict[str, Any] | None = None
    vae_config: dict[str, Any] | None = None
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    prediction_type: str = "epsilon"
    image_size: int = 128
    qkv_bias_seed: int | None = None
    encode_under_autocast: bool = False

    def __post_init__(self) -> None:
        if self.preset not in DIFFUSION_PRESETS:
            raise ValueError(f"unknown diffusion preset {self.preset!r}; expected one of {DIFFUSION_PRESETS}")
        if self.mode not in UNET_TRAINING_MODES:
            raise ValueError(f"unknown UNet training mode {self.mode!r}; expected one of {UNET_TRAINING_MODES}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction type {self.prediction_type!r}; expected one of {PREDICTION_TYPES}")
        if self.qkv_bias_seed is not None and self.mode != "lora":
            raise ValueError(
                f"qkv_bias_seed reproduces the official LoRA wrapper: it needs mode 'lora', not {self.mode!r}"
            )


class DiffusionTeacher(nn.Module):
    """SD UNet + VAE + DDPM noise schedule, exposing the denoising loss for a batch of contexts."""

    def __init__(self, config: DiffusionTeacherConfig) -> None:
        super().__init__()
        self.config = config
        preset_unet, preset_vae = preset_configs(config.preset)
        unet_config = config.unet_config if config.unet_config is not None else preset_unet
        vae_config = config.vae_config if config.vae_config is not None else preset_vae
        if config.weights is None:
            unet, vae = build_unet(unet_config), build_vae(vae_config)
        elif Path(config.weights).is_dir():
            unet, vae = load_stable_diffusion(config.weights)
        else:
            unet, vae = load_stable_diffusion(config.weights, unet_config=unet_config, vae_config=vae_config)

        self.vae = vae.requires_grad_(False).eval()
        self.unet = unet
        if config.qkv_bias_seed is not None:
            add_frozen_qkv_biases(unet, torch.Generator().manual_seed(config.qkv_bias_seed))
        if config.mode == "lora":
            add_unet_lora(unet, config.lora_rank, config.lora_alpha)
        else:
            set_unet_training_mode(unet, config.mode)
        if config.single_token_attention:
            install_single_token_attention(unet)
        if config.gradient_checkpointing:
            unet.enable_gradient_checkpointing()

        self.noise_scheduler = DDPMScheduler(
            num_train_timesteps=config.num_train_timesteps,
            beta_start=config.beta_start,
            beta_end=config.beta_end,
            beta_schedule=config.beta_schedule,
            prediction_type=config.prediction_type,
        )

    @property
    def cross_attention_dim(self) -> int:
        """Width of one context token (768 for SD v1.5)."""
        return int(self.unet.config.cross_attention_dim)

    @property
    def latent_scale(self) -> float:
        """The factor between VAE latents and the UNet's input scale (the VAE config's ``scaling_factor``)."""
        return float(self.vae.config.scaling_factor)

    def train(self, mode: bool = True) -> DiffusionTeacher:
        super().train(mode)
        # The VAE is a fixed encoder: its layers must never switch to training behaviour.
        self.vae.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser should update (LoRA, the whole UNet, or nothing, per `mode`)."""
        return [p for p in self.parameters() if p.requires_grad]

    @torch.no_grad()
    def encode_posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the VAE posterior, B x 4 x h x w, unscaled; `images` are in [-1, 1].

        The posterior is a deterministic function of the image, so it can be cached per image and
        a fresh latent drawn from it each epoch with :meth:`sample_latents`.
        """
        size = self.config.image_size
        if images.ndim != 4 or images.shape[1:] != (3, size, size):
            raise ValueError(f"images must be B x 3 x {size} x {size} (config.image_size), got {tuple(images.shape)}")
        if self.config.encode_under_autocast:
            posterior = self.vae.encode(images).latent_dist
        else:
            with torch.autocast(device_type=images.device.type, enabled=False):
                posterior = self.vae.encode(images.to(self.vae.dtype)).latent_dist
        return posterior.mean, posterior.std

    def sample_latents(
        self, mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A posterior sample scaled for the UNet: (mean + std * eps) * latent_scale."""
        eps = _randn(mean.shape, generator, mean.device, mean.dtype)
        return (mean + std * eps) * self.latent_scale

    def loss(
        self,
        latents: torch.Tensor,
        context: torch.Tensor,
        *,
        timesteps: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Mean squared error of the UNet's prediction at z_t = sqrt(ab_t) z + sqrt(1 - ab_t) eps.

        `latents` are scaled latents (B x 4 x h x w), `context` one B x D token per image.
        Timesteps default to t ~ U{0..T-1} and noise to N(0, I), both drawn from `generator`.
        """
        batch = latents.shape[0]
        if context.ndim != 2 or context.shape != (batch, self.cross_attention_dim):
            raise ValueError(
                f"context must be B x {self.cross_attention_dim} with B = {batch}, got {tuple(context.shape)}"
            )
        if timesteps is None:
            timesteps = _randint(self.config.num_train_timesteps, batch, generator, latents.device)
        if noise is None:
            noise = _randn(latents.shape, generator, latents.device, latents.dtype)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        context = context[:, None, :]
        if not torch.is_autocast_enabled(noisy.device.type):
            # Under autocast every layer casts its own inputs. Casting the context here instead would make the
            # gradients of its many cross-attention uses accumulate in the low-precision dtype.
            noisy, context = noisy.to(self.unet.dtype), context.to(self.unet.dtype)
        prediction = self.unet(noisy, timesteps, encoder_hidden_states=context).sample
        if self.config.prediction_type == "epsilon":
            target = noise
        else:
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        return F.mse_loss(prediction.float(), target.float())


def _randn(
    shape: torch.Size, generator: torch.Generator | None, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    # Draw on the generator's own device (a CPU generator cannot fill a CUDA tensor), then move.
    draw_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=draw_device, dtype=dtype).to(device)


def _randint(high: int, size: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    draw_device = generator.device if generator is not None else device
    return torch.randint(0, high, (size,), generator=generator, device=draw_device).to(device)
