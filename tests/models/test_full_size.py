"""The released presets build the full-size architectures (random weights): ViT-B/16 + SD v1.5 UNet/VAE + LoRA."""

import pytest
import torch

from dcac.config import load_config
from dcac.models.build import build_dcac

VIT_B16_256x128 = 86_140_416  # CLIP ViT-B/16 image tower with a 16x8 (+1) position table and the 512-d projection
SD15_UNET = 859_520_964
LORA_PER_RANK = 311_616  # docs/method.md §6


@pytest.mark.slow
@pytest.mark.parametrize("preset,num_ids,rank", [("ma_to_ms", 751, 8), ("ms_to_ma", 1041, 32)])
def test_released_preset_builds_full_size_models(preset, num_ids, rank):
    torch.manual_seed(0)
    model = build_dcac(load_config(preset), num_ids)

    def count(module, trainable=None):
        return sum(p.numel() for p in module.parameters() if trainable is None or p.requires_grad == trainable)

    encoder = count(model.reid.encoder)
    lora = sum(p.numel() for n, p in model.teacher.unet.named_parameters() if "lora_" in n)
    unet_base = count(model.teacher.unet) - lora
    counts = {
        "vit_encoder": encoder,
        "bnneck+classifier": count(model.reid) - encoder,
        "unet_base": unet_base,
        "unet_lora": lora,
        "vae": count(model.teacher.vae),
        "prompts": model.conditioner.prompts.numel(),
        "trainable_total": count(model, trainable=True),
    }
    print(preset, counts)
    assert encoder == VIT_B16_256x128
    assert unet_base == SD15_UNET
    assert lora == LORA_PER_RANK * rank
    assert counts["prompts"] == num_ids * 768
    assert count(model.teacher.vae, trainable=True) == 0
    assert count(model.teacher.unet, trainable=True) == lora
    assert not model.reid.encoder.embeddings.patch_embedding.weight.requires_grad
