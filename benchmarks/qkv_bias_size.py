"""How much the official code's random frozen q/k/v biases change the SD v1.5 UNet's prediction.

    python benchmarks/qkv_bias_size.py            # full-size SD v1.5 UNet, random weights (~4 GB RAM, CPU ok)
    python benchmarks/qkv_bias_size.py --tiny     # the tiny preset, seconds

The official LoRA wrapper gives the 96 bias-free attn1/attn2 ``to_q/to_k/to_v`` a bias at ``nn.Linear``'s random
initialisation (README, "Differences from the official code", row 3). This builds one random UNet, predicts
the noise for random latents and one context token at a few timesteps without and with those biases
(``dcac.models.lora.add_frozen_qkv_biases``), and reports the change relative to the output's range and size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import RESULTS_DIR, environment, format_table, write_json


def measure(preset: str, latent_size: int, seed: int) -> list[dict]:
    import torch
    from diffusers import UNet2DConditionModel

    from dcac.models.lora import add_frozen_qkv_biases
    from dcac.models.sd_configs import preset_configs

    torch.manual_seed(seed)
    config = preset_configs(preset)[0]
    unet = UNet2DConditionModel.from_config(config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    latents = torch.randn(1, config["in_channels"], latent_size, latent_size, generator=g)
    context = torch.randn(1, 1, config["cross_attention_dim"], generator=g)
    timesteps = (10, 500, 990)
    with torch.no_grad():
        clean = [unet(latents, torch.tensor([t]), encoder_hidden_states=context).sample for t in timesteps]
        count = add_frozen_qkv_biases(unet, torch.Generator().manual_seed(seed))
        biased = [unet(latents, torch.tensor([t]), encoder_hidden_states=context).sample for t in timesteps]
    rows = []
    for t, a, b in zip(timesteps, clean, biased):
        diff = (a - b).abs()
        rows.append(
            {
                "timestep": t,
                "biases": count,
                "max_diff_over_range": float(diff.max() / (a.max() - a.min())),
                "mean_diff_over_mean_abs": float(diff.mean() / a.abs().mean()),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny UNet preset instead of SD v1.5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch

    preset, latent_size = ("tiny", 8) if args.tiny else ("sd15", 16)
    rows = measure(preset, latent_size, args.seed)
    columns = [
        ("timestep", "timestep"),
        ("biases", "biases"),
        ("max_diff_over_range", "max abs change / output range"),
        ("mean_diff_over_mean_abs", "mean abs change / mean abs output"),
    ]
    print(f"UNet {preset}, random weights, {latent_size}x{latent_size} latent, one context token")
    print(format_table(rows, columns))
    out = args.out or RESULTS_DIR / f"qkv_bias_size{'_tiny' if args.tiny else ''}.json"
    payload = {
        "benchmark": "qkv_bias_size",
        "unet": preset,
        "latent_size": latent_size,
        "seed": args.seed,
        "rows": rows,
        "environment": environment(torch.device("cpu")),
    }
    print(f"wrote {write_json(out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
