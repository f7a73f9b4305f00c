"""A pre-trained teacher in miniature for ``dcac demo``.

DCAC's premise is a diffusion model that already knows images before it meets the Re-ID data. The demo
cannot ship Stable Diffusion, so it pre-trains the tiny UNet once on a synthetic "world": many
domains of people drawn with the shared identity rules but in other styles than the demo's unseen target
(:func:`dcac.demo.synthetic.world_styles` leaves the target's look out), with a "caption" per image
(its person's colours, pattern, build and bag; :func:`dcac.demo.synthetic.identity_caption`).

As for Stable Diffusion v1.5, in miniature:

* the VAE is *not* pre-trained: on one CPU core, training even the tiny VAE to reconstruct the world takes
  minutes (150 steps left its reconstruction error at the images' own variance), so it keeps its random
  weights. Only its latent space is calibrated as SD's is (SD's 0.18215 is 1 / the latent std): the
  rescaling is folded into its quant convolutions, so the teacher's fixed ``latent_scale`` of 0.18215 gives
  unit-variance latents;
* the UNet is trained on the DDPM noise-prediction loss, conditioned on the caption through a small
  "text encoder" (a linear map + LayerNorm, trained jointly and then thrown away: DCAC replaces the text
  condition by its ID-wise prompts), with 10 % of the captions dropped (SD drops 10 % for guidance).

The result is a diffusers folder (``unet/``, ``vae/``) that ``diffusion.weights`` loads; it is written once
into the demo folder with a ``teacher.json`` of its settings and reused while those settings match.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch import nn

from dcac.data.transforms import build_diffusion_transform
from dcac.demo.synthetic import render_world, world_styles
from dcac.models.diffusion_teacher import DiffusionTeacher, DiffusionTeacherConfig
from dcac.storage.checkpoint import write_json_atomic

TEACHER_INFO = "teacher.json"


@dataclass(frozen=True)
class TeacherPretraining:
    """The world and the schedule of the miniature pre-training (the cache is keyed on all of it)."""

    exclude: tuple[str, ...] = ("synth_c",)  # domains whose look the world must not contain
    num_domains: int = 12
    ids_per_domain: int = 24
    images_per_id: int = 4
    image_size: int = 64  # the demo's data.diffusion_size
    unet_steps: int = 150  # the default demo must stay within 3 minutes on 2 cores
    unet_batch: int = 32
    caption_dropout: float = 0.1
    held_out_images: int = 128  # the world's last images, kept out to measure how much the UNet uses the caption
    lr: float = 3e-3
    seed: int = 1000


def pretrained_teacher(folder: str | Path, settings: TeacherPretraining = TeacherPretraining()) -> Path:
    """The diffusers folder of the pre-trained tiny teacher: read from ``folder`` or, if absent or made with
    other settings, pre-trained now (about 40 s on 2 CPU cores) and written there."""
    folder = Path(folder)
    wanted = asdict(settings)
    info_path = folder / TEACHER_INFO
    if info_path.is_file():
        try:
            if json.loads(info_path.read_text())["settings"] == json.loads(json.dumps(wanted)):
                print(f"pre-trained teacher: reusing {folder}")
                return folder
        except (json.JSONDecodeError, KeyError):
            pass
    started = time.perf_counter()
    print(
        f"pre-training the tiny teacher on a synthetic world of {settings.num_domains} domains "
        f"(never {', '.join(settings.exclude)}); cached in {folder}",
        flush=True,
    )
    images, captions = world_images(settings)
    teacher = _tiny_teacher(settings)
    scale = fold_latent_scale(teacher.vae, images)
    diffusion_loss = pretrain_unet(teacher, images, captions, settings)
    caption_gain = caption_gain_of(teacher, images, captions, settings)
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    teacher.vae.save_pretrained(staging / "vae")
    teacher.unet.save_pretrained(staging / "unet")
    write_json_atomic(
        staging / TEACHER_INFO,
        {
            "settings": wanted,
            "world_images": len(images),
            "latent_rescale": scale,
            "unet_diffusion_loss": diffusion_loss,
            **caption_gain,
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    print(
        f"pre-trained teacher ready in {time.perf_counter() - started:.0f} s: diffusion loss "
        f"{caption_gain['loss_with_caption']:.3f} with the caption, {caption_gain['loss_without_caption']:.3f} "
        "without (held-out world images)",
        flush=True,
    )
    return folder


def world_images(settings: TeacherPretraining) -> tuple[torch.Tensor, torch.Tensor]:
    """The world's diffusion views (N x 3 x S x S in [-1, 1]) and captions (N x 26)."""
    styles = world_styles(settings.num_domains, seed=settings.seed, exclude=settings.exclude)
    pictures, captions = render_world(
        styles, seed=settings.seed, ids_per_domain=settings.ids_per_domain, images_per_id=settings.images_per_id
    )
    view = build_diffusion_transform(settings.image_size)
    return torch.stack([view(p) for p in pictures]), torch.from_numpy(captions)


def _tiny_teacher(settings: TeacherPretraining) -> DiffusionTeacher:
    """The demo's teacher architecture (tiny preset) with its whole UNet trainable."""
    torch.manual_seed(settings.seed)
    return DiffusionTeacher(
        DiffusionTeacherConfig(preset="tiny", mode="full", image_size=settings.image_size, single_token_attention=False)
    )


@torch.no_grad()
def fold_latent_scale(vae: AutoencoderKL, images: torch.Tensor, latent_scale: float = 0.18215) -> float:
    """Rescale the VAE's latent space so that ``latent_scale`` x a posterior sample has unit std; returns the factor.

    quant_conv's mean rows are multiplied by k and its log-variance biases raised by 2 log k (the posterior
    becomes that of k z); post_quant_conv divides its input by k, so decoding is unchanged.
    """
    posterior = vae.encode(images[:256]).latent_dist
    k = 1.0 / (latent_scale * float(posterior.sample().std()))
    channels = vae.config.latent_channels
    vae.quant_conv.weight[:channels] *= k
    vae.quant_conv.bias[:channels] *= k
    vae.quant_conv.bias[channels:] += 2.0 * math.log(k)
    vae.post_quant_conv.weight /= k
    return k


def pretrain_unet(
    teacher: DiffusionTeacher, images: torch.Tensor, captions: torch.Tensor, settings: TeacherPretraining
) -> float:
    """Train the whole tiny UNet on caption-conditioned noise prediction; returns the last 50 steps' mean loss.

    The last ``settings.held_out_images`` are kept out for :func:`caption_gain_of`. The caption encoder is attached to
    the teacher as ``text_encoder`` for that measurement; it is not saved.
    """
    generator = torch.Generator().manual_seed(settings.seed + 1)
    torch.manual_seed(settings.seed + 1)
    if not 0 < settings.held_out_images < len(images):
        raise ValueError(f"held_out_images must lie in (0, {len(images)}), got {settings.held_out_images}")
    mean, std = teacher.encode_posterior(images[: -settings.held_out_images])
    teacher.text_encoder = nn.Sequential(
        nn.Linear(captions.shape[1], teacher.cross_attention_dim),
        nn.LayerNorm(teacher.cross_attention_dim, elementwise_affine=False),
    )
    optimizer = torch.optim.Adam(teacher.trainable_parameters(), lr=settings.lr)
    teacher.train()
    recent: list[float] = []
    for _ in range(settings.unet_steps):
        index = torch.randint(len(mean), (settings.unet_batch,), generator=generator)
        latents = teacher.sample_latents(mean[index], std[index], generator)
        keep = (torch.rand(len(index), 1, generator=generator) >= settings.caption_dropout).float()
        loss = teacher.loss(latents, teacher.text_encoder(captions[index]) * keep, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        recent = (recent + [float(loss.detach())])[-50:]
    teacher.eval()
    return sum(recent) / max(len(recent), 1)


@torch.no_grad()
def caption_gain_of(
    teacher: DiffusionTeacher, images: torch.Tensor, captions: torch.Tensor, settings: TeacherPretraining
) -> dict[str, float]:
    """Diffusion loss on the held-out world images with their captions and with the null caption, at the same
    noise and timesteps (several draws): how much the pre-trained UNet uses what the condition says."""
    generator = torch.Generator().manual_seed(settings.seed + 2)
    held_out = settings.held_out_images
    mean, std = teacher.encode_posterior(images[-held_out:])
    context = teacher.text_encoder(captions[-held_out:])
    with_caption, without = 0.0, 0.0
    for _ in range(8):
        latents = teacher.sample_latents(mean, std, generator)
        timesteps = torch.randint(teacher.config.num_train_timesteps, (held_out,), generator=generator)
        noise = torch.randn(latents.shape, generator=generator)
        with_caption += float(teacher.loss(latents, context, timesteps=timesteps, noise=noise)) / 8
        without += float(teacher.loss(latents, torch.zeros_like(context), timesteps=timesteps, noise=noise)) / 8
    return {"loss_with_caption": with_caption, "loss_without_caption": without}
