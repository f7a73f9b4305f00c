"""Every speed path of the training step computes the reference path's numbers on a fixed batch.

Each test builds the same tiny DCAC twice (same seed, so the same weights), runs one forward/backward of the
full objective on the same batch with the same latents, timesteps and noise (the teacher draws t and eps from
the global generator, re-seeded before each pass), and compares the loss and the gradients of every
trainable tensor: the Re-ID encoder, the classifier/BNNeck, the ID prompts and the UNet LoRA. Only the
diffusion loss is switched on, so every gradient compared here flows through the teacher.

Tolerances: paths that reorder the same float32 arithmetic agree to 1e-5 of each tensor's largest gradient
(floored at 1e-2 of the model part's largest, for gradients that are zero up to round-off);
bf16 autocast agrees with float32 to 2 % on the loss and to a cosine similarity >= 0.99 per gradient group.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from dcac.config import load_config
from dcac.engine.latent_cache import LatentCache
from dcac.engine.optim import build_optimizer
from dcac.engine.train_step import batch_latents, train_step
from dcac.engine.training_setup import apply_speed_switches
from dcac.models.build import build_dcac
from dcac.models.lora import lora_parameters
from dcac.models.single_token_attention import SingleTokenCrossAttnProcessor

NUM_IDS = 6
EXACT = 1e-5  # max |a - b| / max |b| for float32 paths that only reorder arithmetic


def _model(*overrides: str):
    cfg = load_config("demo", ["loss.id_weight=0", "loss.pcl_weight=0", *overrides])
    torch.manual_seed(0)
    model = build_dcac(cfg, NUM_IDS)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        # peft starts LoRA at B = 0; non-zero LoRA makes every adapter matter to the output.
        for p in lora_parameters(model.teacher.unet):
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        dim = model.memory.features.shape[1]
        model.memory.rebuild(F.normalize(torch.randn(NUM_IDS, dim, generator=g), dim=1), torch.arange(NUM_IDS))
    return cfg, model.train()


def _inputs(cfg, pool: int = 12):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(pool, 3, cfg.data.height, cfg.data.width, generator=g)
    views = torch.rand(pool, 3, cfg.data.diffusion_size, cfg.data.diffusion_size, generator=g) * 2 - 1
    labels = torch.tensor([0, 0, 0, 0, 3, 3, 3, 3, 5, 5, 5, 5])[:pool]
    return images, views, labels


def _pass(model, images, labels, latents, autocast_dtype=None):
    """Loss and the gradient of every trainable tensor (zeros where autograd gave none)."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(11)  # the teacher's timesteps and noise
    with torch.autocast("cpu", dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
        out = model(images, labels, latents)
    out.loss.backward()
    grads = {
        n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
        for n, p in model.named_parameters()
        if p.requires_grad
    }
    return out.loss.detach(), grads


def _latents(model, views, seed: int = 5):
    torch.manual_seed(seed)
    return model.teacher.sample_latents(*model.teacher.encode_posterior(views))


def _run(model, images, views, labels):
    return _pass(model, images, labels, _latents(model, views))


def _assert_same(got, want, tol: float = EXACT):
    loss, grads = got
    ref_loss, ref_grads = want
    assert abs(float(loss) - float(ref_loss)) <= tol * abs(float(ref_loss))
    assert grads.keys() == ref_grads.keys()
    group_max = {}
    for name, grad in ref_grads.items():
        group = name.split(".")[0]
        group_max[group] = max(group_max.get(group, 0.0), float(grad.abs().max()))
    for name, grad in grads.items():
        # Tensors whose gradient is (nearly) zero in exact arithmetic (e.g. the key biases: softmax ignores
        # them) carry only round-off, so each tensor's scale is floored at 1e-2 of its model part's largest.
        scale = max(float(ref_grads[name].abs().max()), 1e-2 * group_max[name.split(".")[0]])
        assert float((grad - ref_grads[name]).abs().max()) <= tol * scale, name
    _assert_gradient_reaches_everything(ref_grads)


def _assert_gradient_reaches_everything(grads):
    """The comparison is not vacuous: the diffusion loss moves the encoder, the prompts and the LoRA."""
    for prefix in ("reid.encoder.", "reid.classifier.", "conditioner.prompts", "teacher.unet."):
        assert any(g.abs().sum() > 0 for n, g in grads.items() if n.startswith(prefix)), prefix


@pytest.fixture(scope="module")
def standard():
    """The reference path: standard SDPA attention everywhere, no shortcut, no checkpointing."""
    cfg, model = _model("diffusion.single_token_attention=false")
    images, views, labels = _inputs(cfg)
    return cfg, model, (images[:8], views[:8], labels[:8]), _run(model, images[:8], views[:8], labels[:8])


def test_single_token_attention_matches_standard_attention(standard):
    cfg, _, batch, reference = standard
    _, model = _model()
    processors = model.teacher.unet.attn_processors
    assert sum(isinstance(p, SingleTokenCrossAttnProcessor) for p in processors.values()) > 0
    _assert_same(_run(model, *batch), reference)


def test_sdpa_matches_plain_attention_processors(standard):
    _, _, batch, reference = standard
    _, model = _model("diffusion.single_token_attention=false")
    model.teacher.unet.set_attn_processor(AttnProcessor())
    model.teacher.vae.set_attn_processor(AttnProcessor())
    assert all(type(p) is AttnProcessor for p in model.teacher.unet.attn_processors.values())
    assert all(isinstance(p, AttnProcessor2_0) for p in standard[1].teacher.unet.attn_processors.values())
    _assert_same(_run(model, *batch), reference)


def test_gradient_checkpointing_matches_plain_backward(standard):
    _, _, batch, reference = standard
    _, model = _model("diffusion.single_token_attention=false", "diffusion.gradient_checkpointing=true")
    assert model.teacher.unet.is_gradient_checkpointing
    _assert_same(_run(model, *batch), reference)


def test_channels_last_matches_contiguous(standard):
    _, _, batch, reference = standard
    cfg, model = _model("diffusion.single_token_attention=false", "train.channels_last=true")
    apply_speed_switches(model, cfg.train, "cpu")
    conv = model.teacher.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    _assert_same(_run(model, *batch), reference)


def test_latent_cache_gives_the_per_step_vae_latents_and_gradients():
    """Same posterior, same eps -> same latents; so the same loss and gradients through the whole model."""
    cfg, model = _model()
    images, views, labels = _inputs(cfg)
    cache = LatentCache(*model.teacher.encode_posterior(views))
    indices = torch.tensor([7, 2, 11, 0, 5, 9, 3, 8])
    batch = {"image": images[indices], "pid": labels[indices], "index": indices}
    torch.manual_seed(5)
    cached = batch_latents(model, batch, cache, torch.device("cpu"))
    torch.manual_seed(5)
    per_step = batch_latents(model, {**batch, "diffusion_image": views[indices]}, None, torch.device("cpu"))
    torch.testing.assert_close(cached, per_step, rtol=0, atol=1e-6)
    _assert_same(
        _pass(model, images[indices], labels[indices], cached), _pass(model, images[indices], labels[indices], per_step)
    )


def test_train_step_with_latent_cache_updates_like_the_per_step_vae():
    """One full train_step (Adam + memory update) from each path leaves the same parameters and memory."""
    accelerator = Accelerator(cpu=True)
    states = []
    for use_cache in (True, False):
        cfg, model = _model(f"diffusion.cache_latents={use_cache}")
        images, views, labels = _inputs(cfg)
        optimizer = build_optimizer(model, replace(cfg.optim, lr=1e-3))
        cache = LatentCache(*model.teacher.encode_posterior(views)) if use_cache else None
        batch = {"image": images[:8], "pid": labels[:8], "index": torch.arange(8)}
        if not use_cache:
            batch["diffusion_image"] = views[:8]
        torch.manual_seed(21)
        parts = train_step(model, optimizer, accelerator, batch, cache)
        states.append((parts, {k: v.clone() for k, v in model.state_dict().items()}))
    (parts_a, state_a), (parts_b, state_b) = states
    assert parts_a.keys() == parts_b.keys() and abs(parts_a["loss"] - parts_b["loss"]) <= 1e-5 * abs(parts_b["loss"])
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key], rtol=0, atol=1e-6, msg=key)


def test_fused_adam_matches_foreach_adam(standard):
    """One Adam step from the same gradients gives the same parameters (to about one float32 ulp)."""
    cfg, _, batch, _ = standard
    lr = 1e-3
    before, after = None, []
    for fused in (True, False):
        _, model = _model()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        optimizer = build_optimizer(model, replace(cfg.optim, lr=lr), fused=fused)
        assert optimizer.defaults["fused"] is (True if fused else None)
        _run(model, *batch)
        optimizer.step()
        after.append({n: p.detach().clone() for n, p in model.named_parameters()})
    assert max(float((after[1][n] - before[n]).abs().max()) for n in before) > 0.5 * lr
    for name in after[0]:
        torch.testing.assert_close(after[0][name], after[1][name], rtol=1e-6, atol=1e-8, msg=name)


def test_bf16_autocast_is_close_to_float32(standard):
    _, model, batch, reference = standard
    images, views, labels = batch
    loss, grads = _pass(model, images, labels, _latents(model, views), autocast_dtype=torch.bfloat16)
    ref_loss, ref_grads = reference
    assert abs(float(loss) - float(ref_loss)) <= 0.02 * abs(float(ref_loss))
    for prefix in ("reid.encoder.", "reid.classifier.", "conditioner.prompts", "teacher.unet."):
        names = [n for n in grads if n.startswith(prefix)]
        got = torch.cat([grads[n].flatten() for n in names])
        want = torch.cat([ref_grads[n].flatten() for n in names])
        assert F.cosine_similarity(got, want, dim=0) >= 0.99, prefix
        assert (got.norm() / want.norm() - 1).abs() <= 0.05, prefix


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="torch 2.13 CPU inductor: the compiled diffusers UNet's backward is wrong (loss exact; gradients of "
    "the context, the LoRA and even full-UNet weights differ or vanish; aot_eager is exact), so train.compile "
    "stays off; re-check on the GPU with benchmarks/train_step.py (grad diff column)",
)
def test_compiled_model_matches_eager(standard):
    _, _, batch, reference = standard
    cfg, model = _model("diffusion.single_token_attention=false", "train.compile=true")
    apply_speed_switches(model, cfg.train, "cpu")
    assert list(model.state_dict()) == list(standard[1].state_dict())
    _assert_same(_run(model, *batch), reference, tol=1e-4)


def test_frozen_weights_in_autocast_dtype_are_bit_identical_under_autocast():
    """Storing the frozen UNet layers in bf16 changes no number of a bf16-autocast pass: autocast casts them anyway."""
    results = []
    for cast in (False, True):
        cfg, model = _model("train.mixed_precision=bf16", f"train.frozen_weights_in_autocast_dtype={cast}")
        apply_speed_switches(model, cfg.train, "cpu")
        unet = model.teacher.unet
        base = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.base_layer.weight
        assert base.dtype == (torch.bfloat16 if cast else torch.float32)
        assert unet.conv_in.weight.dtype == base.dtype
        # Trainable adapters and the float32-run normalisation layers keep float32.
        assert all(p.dtype == torch.float32 for p in lora_parameters(unet))
        assert unet.conv_norm_out.weight.dtype == torch.float32
        images, views, labels = _inputs(cfg)
        results.append(_pass(model, images[:8], labels[:8], _latents(model, views[:8]), autocast_dtype=torch.bfloat16))
    _assert_same(results[1], results[0], tol=0.0)


def test_frozen_weights_stay_float32_without_autocast():
    cfg, model = _model("train.mixed_precision=fp32")
    apply_speed_switches(model, cfg.train, "cpu")
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_encoder_gradient_checkpointing_matches_plain_backward(standard):
    _, _, batch, reference = standard
    _, model = _model("diffusion.single_token_attention=false", "encoder.gradient_checkpointing=true")
    assert model.reid.encoder.gradient_checkpointing
    _assert_same(_run(model, *batch), reference)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="train.compile=auto compiles on CUDA only (the CPU case is the xfail above)"
)
def test_compiled_model_matches_eager_on_cuda():
    """What train.compile=auto turns on for CUDA runs: the compiled ViT and UNet give eager's loss and gradients."""
    _, eager = _model("train.compile=false")
    cfg, compiled = _model("train.compile=auto")
    eager, compiled = eager.cuda(), compiled.cuda()
    apply_speed_switches(compiled, cfg.train, "cuda")
    assert compiled.reid._compiled_call_impl is not None and compiled.teacher.unet._compiled_call_impl is not None
    batch = [t[:8].cuda() for t in _inputs(cfg)]
    want = _run(eager, *batch)
    got = _run(compiled, *batch)
    # cuDNN runs float32 convolutions in TF32 by default (~1e-3 relative per op), eager and compiled alike, but
    # inductor fuses and orders the arithmetic differently; a wrong backward (the CPU inductor bug) gives ~1.
    _assert_same(got, want, tol=1e-2)
