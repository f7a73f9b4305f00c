"""A pre-trained teacher in miniature for ``dcac demo``, shipped with the package.

DCAC's premise is a diffusion model that already knows images before it meets the Re-ID data. The demo
cannot ship Stable Diffusion, so :func:`pretrain` trains a tiny VAE and the tiny UNet once on a synthetic
"world": many domains of people drawn with the shared identity rules but in other styles than the demo's
unseen target (:func:`dcac.demo.synthetic.world_styles` leaves the target's look out), with a "caption" per
image that, like SD's captions, states the whole picture: its person's colours, pattern, build and bag
(:func:`dcac.demo.synthetic.identity_caption`) and its scene, i.e. background kind and colours, lighting,
rendering and camera placement (:func:`dcac.demo.synthetic.scene_caption`).

As for Stable Diffusion v1.5, in miniature:

* the VAE (8x downsampling, 4 latent channels) is trained to reconstruct the world's images with a small KL
  term, its posterior starting narrow (a short training would leave its sampling noise, which no denoiser
  can predict, large at low timesteps), then its latent space is calibrated as SD's is (SD's 0.18215 is
  1 / the latent std): the rescaling is folded into its quant convolutions, so the teacher's fixed
  ``latent_scale`` of 0.18215 gives unit-variance latents;
* the UNet is trained on the DDPM noise-prediction loss, conditioned on the caption through a small
  "text encoder" (a linear map + LayerNorm, trained jointly and then thrown away: DCAC replaces the text
  condition by its ID-wise prompts), with 10 % of the captions dropped (SD drops 10 % for guidance), its
  learning rate warmed up and then decayed along a cosine.

The result, a diffusers folder (``unet/``, ``vae/``) that ``diffusion.weights`` loads and a ``teacher.json`` of
its settings and measurements (held-out reconstruction; diffusion loss with the right, a null, the next
person's caption and the next person's with the right scene, overall and per tenth of the timesteps), ships
in ``dcac/demo/pretrained_teacher``. ``python -m dcac.demo.teacher --pretrain`` remakes it from its seed.
"""

from __future__ import annotations

import argparse
import math
import shutil
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch import nn

from dcac.data.transforms import build_diffusion_transform
from dcac.demo.synthetic import render_world, world_styles
from dcac.models.diffusion_teacher import DiffusionTeacher, DiffusionTeacherConfig
from dcac.models.sd_configs import tiny_unet_config, tiny_vae_config
from dcac.storage.checkpoint import write_json_atomic

TEACHER_INFO = "teacher.json"
#: The teacher ``dcac demo`` uses: pre-trained once by :func:`pretrain` with the default settings.
SHIPPED_TEACHER = Path(__file__).resolve().parent / "pretrained_teacher"


@dataclass(frozen=True)
class TeacherPretraining:
    """The world and the schedule of the miniature pre-training (the shipped ``teacher.json`` records them)."""

    exclude: tuple[str, ...] = ("synth_c",)  # domains whose look the world must not contain
    num_domains: int = 12
    ids_per_domain: int = 96
    images_per_id: int = 8
    image_size: int = 64  # the demo's data.diffusion_size
    vae_channels: tuple[int, ...] = (8, 16, 16, 32)  # narrower than the tiny preset's: a 64x64 VAE step is costly
    vae_steps: int = 600
    vae_batch: int = 16
    vae_lr: float = 2e-3
    kl_weight: float = 1e-6  # SD's VAE uses 1e-6: reconstruction first, the KL only keeps the posterior tame
    # The posterior's starting log-variance (None: diffusers' init, about 0). A short training barely shrinks it,
    # and its sampling noise is what no denoiser can predict at low timesteps.
    vae_logvar_init: float | None = -8.0
    # The tiny preset's 32 GroupNorm groups over 32 channels normalise each channel alone, erasing the per-channel
    # constant that single-token cross-attention adds: a UNet that cannot hear its caption. 8 groups keep it.
    unet_norm_groups: int = 8
    unet_steps: int = 2400
    unet_batch: int = 64
    caption_dropout: float = 0.1
    # SD's captions state the whole picture: with this the caption adds the scene to the person
    scene_caption: bool = True
    caption_hidden: int = 0  # a hidden layer's width in the caption encoder (0: a linear map)
    held_out_images: int = 128  # the world's last images, kept out of both trainings for the measurements
    lr: float = 3e-3
    lr_warmup: int = 100  # UNet steps of linear warm-up
    lr_decay: bool = True  # cosine decay of the UNet's learning rate to zero over its steps
    seed: int = 1000


def pretrain(folder: str | Path, settings: TeacherPretraining = TeacherPretraining()) -> dict:
    """Pre-train the VAE, then the UNet, on the world; measure both on held-out world images; write the
    diffusers folder and its ``teacher.json`` to ``folder`` (replacing it); returns the recorded information."""
    folder = Path(folder)
    started = time.perf_counter()
    images, persons, scenes = world_images(settings)
    held = settings.held_out_images
    if not 0 < held < len(images):
        raise ValueError(f"held_out_images must lie in (0, {len(images)}), got {held}")
    teacher = _tiny_teacher(settings)
    vae_loss = pretrain_vae(teacher.vae, images[:-held], settings)
    reconstruction = reconstruction_quality(teacher.vae, images[-held:])
    scale = fold_latent_scale(teacher.vae, images[:-held])
    captions = torch.cat([persons, scenes], dim=1)
    text_encoder, diffusion_loss = pretrain_unet(teacher, images[:-held], captions[:-held], settings)
    info = {
        "settings": asdict(settings),
        "world_images": len(images),
        "vae_train_loss": vae_loss,
        "held_out_reconstruction": reconstruction,
        "latent_rescale": scale,
        "unet_train_loss": diffusion_loss,
        **measure_captions(teacher, text_encoder, images[-held:], persons[-held:], scenes[-held:], settings),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    teacher.vae.save_pretrained(staging / "vae")
    teacher.unet.save_pretrained(staging / "unet")
    write_json_atomic(staging / TEACHER_INFO, info)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return info


def world_images(settings: TeacherPretraining) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The world's diffusion views (N x 3 x S x S in [-1, 1]), person captions (N x 26) and scene captions
    (N x ``SCENE_CAPTION_SIZE``, or N x 0 without ``scene_caption``)."""
    styles = world_styles(settings.num_domains, seed=settings.seed, exclude=settings.exclude)
    pictures, persons, scenes = render_world(
        styles, seed=settings.seed, ids_per_domain=settings.ids_per_domain, images_per_id=settings.images_per_id
    )
    view = build_diffusion_transform(settings.image_size)
    scenes = torch.from_numpy(scenes) if settings.scene_caption else torch.zeros(len(scenes), 0)
    return torch.stack([view(p) for p in pictures]), torch.from_numpy(persons), scenes


def measure_captions(
    teacher: DiffusionTeacher,
    text_encoder: nn.Module,
    images: torch.Tensor,
    persons: torch.Tensor,
    scenes: torch.Tensor,
    settings: TeacherPretraining,
) -> dict:
    """The held-out diffusion loss under the right caption, the null caption, the next person's caption (their
    scene too) and, with scene captions, the next person's with the right scene (what the person part alone
    adds); the caption gain; and the loss per tenth of the timesteps under each."""
    mean, std = teacher.encode_posterior(images)
    other = settings.images_per_id  # rolling by one person's images gives the next person's caption
    with torch.no_grad():
        contexts = {
            "with_caption": text_encoder(torch.cat([persons, scenes], dim=1)),
            "null_caption": torch.zeros(len(images), teacher.cross_attention_dim),
            "wrong_caption": text_encoder(torch.cat([persons, scenes], dim=1).roll(other, dims=0)),
        }
        if scenes.shape[1]:
            contexts["wrong_person_right_scene"] = text_encoder(torch.cat([persons.roll(other, dims=0), scenes], 1))
    losses = condition_losses(teacher, mean, std, contexts, seed=settings.seed + 2)
    return {
        "held_out_diffusion_loss": losses,
        "caption_gain": condition_gain(losses["with_caption"], losses["null_caption"]),
        "loss_per_timestep_tenth": timestep_profile(teacher, mean, std, contexts, seed=settings.seed + 4),
    }


def _tiny_teacher(settings: TeacherPretraining) -> DiffusionTeacher:
    """The demo's teacher architecture (the tiny UNet with fewer norm groups, a narrower VAE), UNet trainable."""
    torch.manual_seed(settings.seed)
    vae_config = tiny_vae_config()
    vae_config.update(
        block_out_channels=list(settings.vae_channels), norm_num_groups=4, sample_size=settings.image_size
    )
    return DiffusionTeacher(
        DiffusionTeacherConfig(
            preset="tiny",
            mode="full",
            image_size=settings.image_size,
            single_token_attention=False,
            unet_config=tiny_unet_config() | {"norm_num_groups": settings.unet_norm_groups},
            vae_config=vae_config,
        )
    )


def pretrain_vae(vae: AutoencoderKL, images: torch.Tensor, settings: TeacherPretraining) -> float:
    """Train the VAE on reconstruction + ``kl_weight`` x KL; returns the last 50 steps' mean reconstruction MSE.
    The VAE is left frozen and in eval mode, as the teacher keeps it."""
    generator = torch.Generator().manual_seed(settings.seed + 3)
    if settings.vae_logvar_init is not None:
        with torch.no_grad():
            vae.quant_conv.bias[vae.config.latent_channels :] = settings.vae_logvar_init
    vae.requires_grad_(True).train()
    optimizer = torch.optim.Adam(vae.parameters(), lr=settings.vae_lr)
    recent: list[float] = []
    for _ in range(settings.vae_steps):
        batch = images[torch.randint(len(images), (settings.vae_batch,), generator=generator)]
        posterior = vae.encode(batch).latent_dist
        mse = torch.nn.functional.mse_loss(vae.decode(posterior.sample(generator)).sample, batch)
        loss = mse + settings.kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        recent = (recent + [float(mse.detach())])[-50:]
    vae.requires_grad_(False).eval()
    return sum(recent) / max(len(recent), 1)


@torch.no_grad()
def reconstruction_quality(vae: AutoencoderKL, images: torch.Tensor) -> dict[str, float]:
    """The VAE's reconstruction MSE (from the posterior mean) next to the images' variance around their mean image
    (the MSE of always answering that mean), and the PSNR for pixel values in [-1, 1]."""
    decoded = vae.decode(vae.encode(images).latent_dist.mean).sample
    mse = float(torch.nn.functional.mse_loss(decoded, images))
    variance = float(((images - images.mean(dim=0)) ** 2).mean())
    return {"mse": mse, "variance": variance, "psnr_db": 10 * math.log10(4.0 / mse)}


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
) -> tuple[nn.Module, float]:
    """Train the whole tiny UNet on caption-conditioned noise prediction, jointly with a caption encoder.

    Returns the caption encoder (for the measurements; it is not saved) and the last 50 steps' mean loss.
    """
    generator = torch.Generator().manual_seed(settings.seed + 1)
    torch.manual_seed(settings.seed + 1)
    mean, std = teacher.encode_posterior(images)
    text_encoder = caption_encoder(captions.shape[1], teacher.cross_attention_dim, settings.caption_hidden)
    optimizer = torch.optim.Adam([*teacher.trainable_parameters(), *text_encoder.parameters()], lr=settings.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(lr_factor, settings=settings))
    teacher.train()
    recent: list[float] = []
    for _ in range(settings.unet_steps):
        index = torch.randint(len(mean), (settings.unet_batch,), generator=generator)
        latents = teacher.sample_latents(mean[index], std[index], generator)
        keep = (torch.rand(len(index), 1, generator=generator) >= settings.caption_dropout).float()
        loss = teacher.loss(latents, text_encoder(captions[index]) * keep, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        recent = (recent + [float(loss.detach())])[-50:]
    teacher.eval()
    return text_encoder.eval(), sum(recent) / max(len(recent), 1)


def caption_encoder(caption_size: int, width: int, hidden: int) -> nn.Module:
    """The miniature "text encoder": a linear map (or, with ``hidden`` > 0, a one-hidden-layer MLP) to the
    context width, then a LayerNorm without parameters so that every caption's token has the same scale."""
    layers: list[nn.Module] = [nn.Linear(caption_size, hidden), nn.SiLU()] if hidden else []
    layers += [nn.Linear(hidden or caption_size, width), nn.LayerNorm(width, elementwise_affine=False)]
    return nn.Sequential(*layers)


def lr_factor(step: int, *, settings: TeacherPretraining) -> float:
    """The UNet learning rate's factor at ``step``: linear warm-up, then constant or a cosine decay to zero."""
    if step < settings.lr_warmup:
        return (step + 1) / settings.lr_warmup
    if not settings.lr_decay:
        return 1.0
    progress = (step - settings.lr_warmup) / max(settings.unet_steps - settings.lr_warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


@torch.no_grad()
def condition_losses(
    teacher: DiffusionTeacher,
    mean: torch.Tensor,
    std: torch.Tensor,
    contexts: dict[str, torch.Tensor],
    *,
    seed: int,
    draws: int = 8,
) -> dict[str, float]:
    """The diffusion loss of the images with posterior (``mean``, ``std``) under each context, every context at
    the same latent samples, noise and timesteps (``draws`` of them): differences come from the context alone."""
    generator = torch.Generator().manual_seed(seed)
    totals = dict.fromkeys(contexts, 0.0)
    for _ in range(draws):
        losses = _shared_draw_losses(teacher, mean, std, contexts, generator, 0, teacher.config.num_train_timesteps)
        for name, loss in losses.items():
            totals[name] += loss / draws
    return totals


@torch.no_grad()
def timestep_profile(
    teacher: DiffusionTeacher,
    mean: torch.Tensor,
    std: torch.Tensor,
    contexts: dict[str, torch.Tensor],
    *,
    seed: int,
    tenths: int = 10,
    draws: int = 2,
) -> dict[str, list[float]]:
    """The diffusion loss per equal slice of the timesteps (``tenths`` slices, low t first) under each context:
    in slice k every image draws its timestep uniformly within the slice; contexts share latents, noise and
    timesteps. Shows where the loss lies and where a caption can lower it."""
    generator = torch.Generator().manual_seed(seed)
    steps = teacher.config.num_train_timesteps
    profile = {name: [0.0] * tenths for name in contexts}
    for k in range(tenths):
        low, high = k * steps // tenths, (k + 1) * steps // tenths
        for _ in range(draws):
            for name, loss in _shared_draw_losses(teacher, mean, std, contexts, generator, low, high).items():
                profile[name][k] += loss / draws
    return profile


def _shared_draw_losses(
    teacher: DiffusionTeacher,
    mean: torch.Tensor,
    std: torch.Tensor,
    contexts: dict[str, torch.Tensor],
    generator: torch.Generator,
    low: int,
    high: int,
) -> dict[str, float]:
    """One draw of latents, timesteps in [low, high) and noise, and the diffusion loss of every context at it."""
    latents = teacher.sample_latents(mean, std, generator)
    timesteps = torch.randint(low, high, (len(mean),), generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    return {
        name: float(teacher.loss(latents, context, timesteps=timesteps, noise=noise))
        for name, context in contexts.items()
    }


def condition_gain(loss_with: float, loss_null: float) -> float:
    """How much lower the loss is with the condition than with the null one, as a fraction of the latter."""
    return 1.0 - loss_with / loss_null


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dcac.demo.teacher", description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain", action="store_true", required=True, help="pre-train the teacher now")
    parser.add_argument(
        "--out", type=Path, default=SHIPPED_TEACHER, help=f"folder to write (default {SHIPPED_TEACHER})"
    )
    args = parser.parse_args(argv)
    info = pretrain(args.out, TeacherPretraining())
    losses = info["held_out_diffusion_loss"]
    rec = info["held_out_reconstruction"]
    print(
        f"wrote {args.out} in {info['seconds']:.0f} s: VAE reconstruction MSE {rec['mse']:.4f} vs image variance "
        f"{rec['variance']:.4f} (PSNR {rec['psnr_db']:.1f} dB); held-out diffusion loss "
        + ", ".join(f"{k} {v:.4f}" for k, v in losses.items())
        + f"; caption gain {100 * info['caption_gain']:.1f} %"
    )


if __name__ == "__main__":
    main()
