"""``dcac import`` on official-layout checkpoints with random weights at tiny size.

The checkpoint is built here in the official key layout (OpenAI CLIP visual tower under
``encoder.image_encoder.``, ``encoder.bnneck.*``, ``encoder.fc.weight``) and the imported model's features
are compared with a plain forward of that layout written below (conv patch embedding, class token and
positions, pre-LN, residual blocks with packed q/k/v, QuickGELU MLP, post-LN on the class token, ``@ proj``,
BNNeck in eval mode, L2 norm), which shares no code with dcac's encoder or its weight mapping.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open

from dcac.cli import main
from dcac.demo.synthetic import write_synthetic
from dcac.models.build import load_reid_model

WIDTH, LAYERS, HEADS, MLP, OUT, GRID = 64, 2, 2, 128, 32, (4, 2)  # the demo preset's tiny tower at 64x32
SOURCE_IDS = 2 * 6  # demo sources synth_a + synth_b, 6 training ids each (below)


def official_reid_layout(
    num_ids: int,
    seed: int = 0,
    prefix: str = "",
    *,
    width: int = WIDTH,
    layers: int = LAYERS,
    mlp: int = MLP,
    out: int = OUT,
    grid: tuple[int, int] = GRID,
    meta: bool = False,
):
    """The Re-ID part of an official checkpoint; ``meta=True``: shapes only (full-size layout checks)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, std=0.1):
        return torch.empty(*shape, device="meta") if meta else torch.randn(*shape, generator=g) * std

    tower = {
        "conv1.weight": rand(width, 3, 16, 16, std=0.02),
        "class_embedding": rand(width),
        "positional_embedding": rand(grid[0] * grid[1] + 1, width),
        "ln_pre.weight": 1 + rand(width),
        "ln_pre.bias": rand(width),
        "ln_post.weight": 1 + rand(width),
        "ln_post.bias": rand(width),
        "proj": rand(width, out, std=width**-0.5),
    }
    for i in range(layers):
        block = {
            "attn.in_proj_weight": rand(3 * width, width),
            "attn.in_proj_bias": rand(3 * width),
            "attn.out_proj.weight": rand(width, width),
            "attn.out_proj.bias": rand(width),
            "ln_1.weight": 1 + rand(width),
            "ln_1.bias": rand(width),
            "ln_2.weight": 1 + rand(width),
            "ln_2.bias": rand(width),
            "mlp.c_fc.weight": rand(mlp, width),
            "mlp.c_fc.bias": rand(mlp),
            "mlp.c_proj.weight": rand(width, mlp),
            "mlp.c_proj.bias": rand(width),
        }
        tower.update({f"transformer.resblocks.{i}.{k}": v for k, v in block.items()})
    state = {"encoder.image_encoder." + k: v for k, v in tower.items()}
    state.update(
        {
            "encoder.bnneck.weight": 1 + rand(out),
            "encoder.bnneck.bias": torch.zeros(out, device="meta" if meta else None),
            "encoder.bnneck.running_mean": rand(out),
            "encoder.bnneck.running_var": 0.5 + rand(out).abs(),
            "encoder.bnneck.num_batches_tracked": torch.tensor(1234, device="meta" if meta else None),
            "encoder.fc.weight": rand(num_ids, out, std=0.001),
        }
    )
    return {prefix + k: v for k, v in state.items()}


def reference_feature(state: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """The official test feature: normalize(BN_eval(ln_post(x_cls) @ proj))."""
    v = {k[len("encoder.image_encoder.") :]: t for k, t in state.items() if k.startswith("encoder.image_encoder.")}
    x = F.conv2d(images, v["conv1.weight"], stride=16).flatten(2).transpose(1, 2)
    x = torch.cat([v["class_embedding"].expand(x.shape[0], 1, WIDTH), x], dim=1) + v["positional_embedding"]
    x = F.layer_norm(x, (WIDTH,), v["ln_pre.weight"], v["ln_pre.bias"])
    batch, tokens, head_dim = x.shape[0], x.shape[1], WIDTH // HEADS
    for i in range(LAYERS):
        b = {k.split(f"resblocks.{i}.", 1)[1]: t for k, t in v.items() if f"resblocks.{i}." in k}
        h = F.layer_norm(x, (WIDTH,), b["ln_1.weight"], b["ln_1.bias"])
        q, k, val = (h @ b["attn.in_proj_weight"].T + b["attn.in_proj_bias"]).chunk(3, dim=-1)
        q, k, val = (t.reshape(batch, tokens, HEADS, head_dim).transpose(1, 2) for t in (q, k, val))
        weights = (q @ k.transpose(-1, -2) / math.sqrt(head_dim)).softmax(-1)
        attn = (weights @ val).transpose(1, 2).reshape(batch, tokens, WIDTH)
        x = x + attn @ b["attn.out_proj.weight"].T + b["attn.out_proj.bias"]
        h = F.layer_norm(x, (WIDTH,), b["ln_2.weight"], b["ln_2.bias"])
        h = h @ b["mlp.c_fc.weight"].T + b["mlp.c_fc.bias"]
        h = h * torch.sigmoid(1.702 * h)
        x = x + h @ b["mlp.c_proj.weight"].T + b["mlp.c_proj.bias"]
    f = F.layer_norm(x[:, 0], (WIDTH,), v["ln_post.weight"], v["ln_post.bias"]) @ v["proj"]
    bn = {k: state["encoder.bnneck." + k] for k in ("weight", "bias", "running_mean", "running_var")}
    f_bn = (f - bn["running_mean"]) / torch.sqrt(bn["running_var"] + 1e-5) * bn["weight"] + bn["bias"]
    return F.normalize(f_bn, dim=1)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_synthetic(
        root,
        domains=["synth_a", "synth_b", "synth_c"],
        num_train_ids=6,
        num_test_ids=4,
        images_per_id=2,
        num_distractors=1,
        height=64,
        width=32,
    )
    return root


def test_imported_features_equal_the_reference_forward(tmp_path):
    state = official_reid_layout(num_ids=SOURCE_IDS, prefix="module.")  # DataParallel-saved
    ckpt = tmp_path / "source_synth.pth"
    torch.save(state, ckpt)
    run = tmp_path / "run"
    assert main(["import", str(ckpt), "--out", str(run), "--config", "demo"]) == 0
    model, config, info = load_reid_model(run)
    assert info["num_ids"] == SOURCE_IDS and config.encoder.preset == "tiny"
    images = torch.randn(5, 3, 64, 32, generator=torch.Generator().manual_seed(1))
    plain = {k[len("module.") :]: t for k, t in state.items()}
    with torch.no_grad():
        ours = model.extract(images)
        expected = reference_feature(plain, images)
        logits = model(images).logits
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)
    assert (ours - F.normalize(expected.roll(1, dims=1), dim=1)).abs().max() > 1e-2  # the check can fail
    # The classifier is the official fc on f_bn.
    f_bn = model.bottleneck(model.encoder(images))
    torch.testing.assert_close(logits, f_bn @ plain["encoder.fc.weight"].T)


def test_eval_extract_search_export_accept_the_imported_run(tmp_path, synth_root, capsys):
    ckpt = tmp_path / "source_synth.pth"
    state = official_reid_layout(num_ids=SOURCE_IDS)
    torch.save(state, ckpt)
    run = tmp_path / "run"
    assert main(["import", str(ckpt), "--out", str(run), "--config", "demo", "--root", str(synth_root)]) == 0
    metrics_file = tmp_path / "metrics.json"
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(run),
                "--target",
                "synth_c",
                "--root",
                str(synth_root),
                "--device",
                "cpu",
                "--out",
                str(metrics_file),
            ]
        )
        == 0
    )
    assert 0 <= json.loads(metrics_file.read_text())["synth_c"]["mAP"] <= 100
    gallery = synth_root / "synth_c" / "bounding_box_test"
    feats = tmp_path / "gallery.safetensors"
    assert main(["extract", str(gallery), "--out", str(feats), "--checkpoint", str(run), "--device", "cpu"]) == 0
    # End to end: the extracted features are the reference forward of the images (already 64x32, so the
    # test transform is only x / 255 normalised with mean = std = 0.5).
    with safe_open(str(feats), "pt") as f:
        names, extracted = json.loads(f.metadata()["names"]), f.get_tensor("features")
    pixels = (
        torch.stack(
            [torch.from_numpy(np.asarray(Image.open(gallery / n).convert("RGB"), dtype=np.float32)) for n in names]
        ).permute(0, 3, 1, 2)
        / 255.0
    )
    torch.testing.assert_close(extracted, reference_feature(state, (pixels - 0.5) / 0.5), rtol=1e-4, atol=1e-5)
    query = next((synth_root / "synth_c" / "query").iterdir())
    assert (
        main(
            [
                "search",
                str(query),
                "--gallery",
                str(feats),
                "--checkpoint",
                str(run),
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "search"),
            ]
        )
        == 0
    )
    assert (tmp_path / "search" / "results.json").is_file()
    assert (
        main(["explain", str(query), "--checkpoint", str(run), "--device", "cpu", "--out", str(tmp_path / "cams")]) == 0
    )
    assert len(list((tmp_path / "cams").glob("*_cam.png"))) == 1
    assert main(["export", "--checkpoint", str(run), "--out", str(tmp_path / "m.onnx")]) == 0


def test_identity_count_must_match_the_sources(tmp_path, synth_root, capsys):
    ckpt = tmp_path / "source_synth.pth"
    torch.save(official_reid_layout(num_ids=7), ckpt)
    assert main(["import", str(ckpt), "--out", str(tmp_path / "r"), "--config", "demo", "--root", str(synth_root)]) == 2
    err = capsys.readouterr().err
    assert "7 identities" in err and f"has {SOURCE_IDS}" in err
    # Without a data root, the paper's datasets have known training identity counts (Market-1501: 751).
    tiny = ["encoder.preset=tiny", "data.height=64", "data.width=32"]
    assert main(["import", str(ckpt), *tiny, "--config", "ma_to_ms", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "7 identities" in err and "751" in err
    assert not (tmp_path / "r").exists()


def test_unknown_layout_names_missing_and_unexpected_keys(tmp_path, capsys):
    state = official_reid_layout(num_ids=SOURCE_IDS)
    del state["encoder.image_encoder.ln_post.bias"]
    state["encoder.cam_emb"] = torch.zeros(6, WIDTH)
    ckpt = tmp_path / "odd.pth"
    torch.save(state, ckpt)
    assert main(["import", str(ckpt), "--out", str(tmp_path / "r"), "--config", "demo"]) == 2
    err = capsys.readouterr().err
    assert "post_layernorm.bias" in err and "encoder.cam_emb" in err and "missing" in err and "unexpected" in err
    # A positional table for another input size is a shape error naming the key (no silent resize).
    torch.save(official_reid_layout(num_ids=SOURCE_IDS), ckpt)
    assert main(["import", str(ckpt), "data.height=128", "--out", str(tmp_path / "r"), "--config", "demo"]) == 2
    err = capsys.readouterr().err
    assert "positional_embedding" in err and "(9, 64)" in err and "(17, 64)" in err
    # The setting comes from the released file name; any other name needs --config.
    assert main(["import", str(ckpt), "--out", str(tmp_path / "r")]) == 2
    assert "--config" in capsys.readouterr().err


def test_released_names_pick_their_preset():
    from dcac.engine.official_import import preset_for_checkpoint

    assert preset_for_checkpoint("x/source_ma.pth") == "ma_to_ms"
    assert preset_for_checkpoint("source_c3.pth") == "c3_to_ma"
    assert preset_for_checkpoint("source_ma+d+ms.pth") == "ma+d+ms_to_c3"
    assert preset_for_checkpoint("source_d+ms+c3.pth") == "d+ms+c3_to_ma"


def test_clipreid_checkpoint_starts_the_encoder(tmp_path):
    from dcac.config import load_config
    from dcac.models.build import build_reid_model

    official = official_reid_layout(num_ids=SOURCE_IDS, seed=3)
    clipreid = {
        k.replace("encoder.image_encoder.", "image_encoder."): v
        for k, v in official.items()
        if k.startswith("encoder.image_encoder.")
    }
    clipreid.update(
        {
            k.replace("encoder.bnneck.", "bottleneck_proj."): v
            for k, v in official.items()
            if k.startswith("encoder.bnneck.")
        }
    )
    clipreid["classifier_proj.weight"] = official["encoder.fc.weight"]
    clipreid["classifier.weight"] = torch.zeros(SOURCE_IDS, WIDTH)  # the 768-d side dcac does not use
    clipreid["bottleneck.weight"] = torch.ones(WIDTH)
    clipreid["prompt_learner.cls_ctx"] = torch.zeros(SOURCE_IDS, 4, 16)
    path = tmp_path / "ViT-B-16_60.pth"
    torch.save(clipreid, path)
    config = load_config("demo", [f"encoder.weights={path}"])
    model = build_reid_model(config, SOURCE_IDS, load_weights=True).eval()
    images = torch.randn(3, 3, 64, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model.extract(images), reference_feature(official, images), rtol=1e-4, atol=1e-5)
    assert torch.equal(model.classifier.weight, official["encoder.fc.weight"])
    # Another identity count: tower and BNNeck load, the classifier keeps its own random start.
    other = build_reid_model(config, 5, load_weights=True)
    assert torch.equal(other.bottleneck.running_var, official["encoder.bnneck.running_var"])
    assert other.classifier.weight.shape == (5, OUT)


def _independent_ldm_layout():
    """The diffusers -> original (LDM) key mapping the SD loader's tests write from the ``ldm`` code."""
    path = Path(__file__).parents[1] / "models" / "test_sd_weights.py"
    spec = importlib.util.spec_from_file_location("sd_layout_for_import_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def official_teacher_layout(rank: int, num_ids: int, seed: int = 0, *, full_size: bool = False):
    """A tiny official ``denoiser.*`` (LDM UNet with loralib LoRA and q/k/v biases, VAE, schedule) and, per
    diffusers module, the LoRA/bias tensors put in, plus the SD single-file state of the frozen base.

    ``full_size``: SD v1.5's architecture on the meta device (shapes only)."""
    from dcac.models.sd_configs import sd15_unet_config, sd15_vae_config, tiny_unet_config, tiny_vae_config
    from dcac.models.sd_weights import build_unet, build_vae

    layout = _independent_ldm_layout()
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, std):
        return torch.empty(*shape, device="meta") if full_size else torch.randn(*shape, generator=g) * std

    with torch.device("meta" if full_size else "cpu"):
        unet_config, vae_config = (
            (sd15_unet_config(), sd15_vae_config()) if full_size else (tiny_unet_config(), tiny_vae_config())
        )
        unet, vae = build_unet(unet_config), build_vae(vae_config)
    with torch.no_grad():
        for p in list(unet.parameters()) + list(vae.parameters()):
            p.copy_(rand(*p.shape, std=0.05))
    single_file = layout.to_original_layout(unet, vae)
    teacher = {
        k.replace("model.diffusion_model.", "denoiser.model.").replace("first_stage_model.", "denoiser.autoencoder."): v
        for k, v in single_file.items()
    }
    teacher["denoiser.betas"] = rand(1000, std=0.01)
    teacher["denoiser.model.prompt_emb.prompt_emb"] = rand(num_ids, unet_config["cross_attention_dim"], std=1.0)
    adapted = {}
    for name, module in unet.named_modules():
        if not re.fullmatch(
            r".*transformer_blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.0\.proj)", name
        ):
            continue
        ldm = "denoiser.model." + layout._unet_key_to_original(name + ".weight", unet.config)[: -len(".weight")]
        parts = {"lora_A": rand(rank, module.in_features, std=0.3), "lora_B": rand(module.out_features, rank, std=0.3)}
        if re.search(r"attn[12]\.to_[qkv]$", name):
            parts["bias"] = rand(module.out_features, std=0.3)
        teacher.update({f"{ldm}.{k}": v for k, v in parts.items()})
        adapted[name] = parts
    return teacher, adapted, unet.eval(), single_file


def test_teacher_lora_and_prompts_map_into_dcacs_teacher(tmp_path):
    from safetensors.torch import load_file, save_file

    from dcac.config import load_config
    from dcac.models.build import build_dcac
    from dcac.models.official_teacher import load_teacher_init

    rank = 4
    teacher, adapted, base_unet, single_file = official_teacher_layout(rank, SOURCE_IDS)
    ckpt = tmp_path / "source_synth.pth"
    torch.save({**official_reid_layout(num_ids=SOURCE_IDS), **teacher}, ckpt)
    run = tmp_path / "run"
    assert main(["import", str(ckpt), f"diffusion.lora_rank={rank}", "--out", str(run), "--config", "demo"]) == 0
    imported = load_file(str(run / "teacher_init.safetensors"))
    sd_file = tmp_path / "sd.safetensors"
    save_file(single_file, str(sd_file))
    config = load_config("demo", [f"diffusion.weights={sd_file}", f"diffusion.lora_rank={rank}"])
    model = build_dcac(config, SOURCE_IDS).eval()
    skipped = load_teacher_init(model, imported)
    # dcac's default teacher is bias-free on q/k/v: the official random biases are kept, under diffusers names.
    biased = sorted(f"teacher.unet.{name}.bias" for name, parts in adapted.items() if "bias" in parts)
    blocks = [n for n, _ in base_unet.named_modules() if re.fullmatch(r".*transformer_blocks\.\d+", n)]
    assert skipped == biased and len(biased) == len(blocks) * 2 * 3  # attn1/attn2 x q/k/v per block
    for name, parts in adapted.items():
        if "bias" in parts:
            assert torch.equal(imported[f"teacher.unet.{name}.bias"], parts["bias"])
    assert torch.equal(model.conditioner.prompts.detach(), teacher["denoiser.model.prompt_emb.prompt_emb"])
    # Reference: the plain diffusers UNet with W + (alpha / r) B A merged into each adapted layer by hand.
    g = torch.Generator().manual_seed(5)
    latents, context = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 1, 32, generator=g)
    steps = torch.tensor([10, 700])
    modules = dict(base_unet.named_modules())
    with torch.no_grad():
        without_lora = base_unet(latents, steps, encoder_hidden_states=context).sample
        for name, parts in adapted.items():
            modules[name].weight += (parts["lora_B"] @ parts["lora_A"]) * (config.diffusion.lora_alpha / rank)
        ours = model.teacher.unet(latents, steps, encoder_hidden_states=context).sample
        expected = base_unet(latents, steps, encoder_hidden_states=context).sample
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)
    assert (expected - without_lora).abs().max() > 1e-3  # the LoRA moves the output ~100x the tolerance


def test_teacher_rank_and_layout_errors(tmp_path, capsys):
    teacher, _, _, _ = official_teacher_layout(4, SOURCE_IDS)
    ckpt = tmp_path / "source_synth.pth"
    torch.save({**official_reid_layout(num_ids=SOURCE_IDS), **teacher}, ckpt)
    assert main(["import", str(ckpt), "diffusion.lora_rank=8", "--out", str(tmp_path / "r"), "--config", "demo"]) == 2
    assert "LoRA rank is 4" in capsys.readouterr().err
    # The Re-ID model alone needs no teacher settings.
    assert main(["import", str(ckpt), "--no-teacher", "--out", str(tmp_path / "r"), "--config", "demo"]) == 0
    assert (tmp_path / "r" / "reid_model.safetensors").is_file() and not (
        tmp_path / "r" / "teacher_init.safetensors"
    ).exists()
    del teacher["denoiser.model.out.2.weight"]
    teacher["denoiser.model.label_emb.0.weight"] = torch.zeros(2, 2)
    torch.save({**official_reid_layout(num_ids=SOURCE_IDS), **teacher}, ckpt)
    assert main(["import", str(ckpt), "diffusion.lora_rank=4", "--out", str(tmp_path / "r2"), "--config", "demo"]) == 2
    err = capsys.readouterr().err
    assert "conv_out.weight" in err and "denoiser.model.label_emb.0.weight" in err


def test_full_size_release_layout_maps_completely():
    """ViT-B/16 at 256x128 (129 positions) + SD v1.5 with rank-8 LoRA, as source_ma.pth: every tensor finds
    its place in dcac's full-size model (meta device: shapes only, no memory)."""
    from dcac.config import load_config
    from dcac.models.build import build_dcac
    from dcac.models.official_checkpoint import official_reid_state
    from dcac.models.official_teacher import official_teacher_state

    config = load_config("ma_to_ms")
    with torch.device("meta"):
        model = build_dcac(config, 751)
    reid = official_reid_layout(751, width=768, layers=12, mlp=3072, out=512, grid=(16, 8), meta=True)
    assert set(official_reid_state(reid, model.reid, "source_ma.pth")) == set(model.reid.state_dict())
    teacher, adapted, _, _ = official_teacher_layout(8, 751, full_size=True)
    imported = official_teacher_state(teacher, config, 751, "source_ma.pth")
    own = model.state_dict()
    lora = [k for k in imported if ".lora_" in k]
    biases = [k for k in imported if k.endswith(".bias")]
    assert len(adapted) == 144 and len(lora) == 2 * 144 and len(biases) == 96  # 16 blocks x (9 layers, 6 biases)
    assert all(k in own and own[k].shape == imported[k].shape for k in lora + ["conditioner.prompts"])
    assert set(lora) == {k for k in own if ".lora_" in k}


def test_training_starts_from_an_imported_run(tmp_path, synth_root, capsys):
    from safetensors.torch import load_file

    rank = 4
    teacher, _, _, _ = official_teacher_layout(rank, SOURCE_IDS)
    reid = official_reid_layout(num_ids=SOURCE_IDS)
    ckpt = tmp_path / "source_synth.pth"
    torch.save({**reid, **teacher}, ckpt)
    imported = tmp_path / "imported"
    assert main(["import", str(ckpt), f"diffusion.lora_rank={rank}", "--out", str(imported), "--config", "demo"]) == 0
    run = tmp_path / "continued"
    # lr = 0: the first step leaves every parameter where the import put it, so the run's files show the start.
    assert (
        main(
            [
                "train",
                "--config",
                "demo",
                f"data.root={synth_root}",
                f"train.output_dir={run}",
                f"train.init_from={imported}",
                f"diffusion.lora_rank={rank}",
                "optim.lr=0",
                "optim.epochs=1",
                "train.max_steps_per_epoch=1",
                "train.progress=false",
                "data.batch_size=8",
                "data.num_instances=2",
            ]
        )
        == 0
    )
    started = load_file(str(run / "checkpoint" / "model.safetensors"))
    expected_teacher = load_file(str(imported / "teacher_init.safetensors"))
    lora = [k for k in expected_teacher if ".lora_" in k]
    assert lora and all(torch.equal(started[k], expected_teacher[k]) for k in lora + ["conditioner.prompts"])
    expected_reid = load_file(str(imported / "reid_model.safetensors"))
    weights = [k for k in expected_reid if "running_" not in k and "num_batches" not in k]
    assert all(torch.equal(started["reid." + k], expected_reid[k]) for k in weights)
    # A run on other sources (other identity count) is refused with both numbers.
    assert (
        main(
            [
                "train",
                "--config",
                "demo",
                f"data.root={synth_root}",
                f"train.output_dir={tmp_path / 'x'}",
                f"train.init_from={imported}",
                "data.sources=[synth_a]",
                f"diffusion.lora_rank={rank}",
                "train.progress=false",
                "data.batch_size=8",
                "data.num_instances=2",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"{SOURCE_IDS} identities" in err and "have 6" in err


def test_encoder_weights_still_take_an_openai_state_dict(tmp_path):
    """Recognising CLIP-ReID files leaves the other CLIP layouts to the CLIP loader."""
    from dcac.config import load_config
    from dcac.models.build import build_reid_model

    official = official_reid_layout(num_ids=SOURCE_IDS, seed=4)
    openai = {
        k.replace("encoder.image_encoder.", "visual."): v
        for k, v in official.items()
        if k.startswith("encoder.image_encoder.")
    }
    path = tmp_path / "clip_visual.pt"
    torch.save(openai, path)
    model = build_reid_model(load_config("demo", [f"encoder.weights={path}"]), SOURCE_IDS, load_weights=True)
    images = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(3))
    identity_bn = {
        **official,
        "encoder.bnneck.weight": torch.ones(OUT),
        "encoder.bnneck.bias": torch.zeros(OUT),
        "encoder.bnneck.running_mean": torch.zeros(OUT),
        "encoder.bnneck.running_var": torch.ones(OUT),
    }
    with torch.no_grad():
        ours = model.eval().extract(images)
    torch.testing.assert_close(ours, reference_feature(identity_bn, images), rtol=1e-4, atol=1e-5)
