"""``dcac import``: a released official DCAC checkpoint as a dcac run folder (``dcac.engine.official_import``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dcac.config import load_config


def _cmd_import(args: argparse.Namespace) -> int:
    from dcac.engine.official_import import import_official_checkpoint, preset_for_checkpoint

    preset = args.config or preset_for_checkpoint(args.checkpoint)
    config = load_config(preset, args.overrides)
    info = import_official_checkpoint(
        args.checkpoint, args.out, config, data_root=args.root, with_teacher=not args.no_teacher
    )
    print(f"imported {args.checkpoint} ({info['num_ids']} identities, config {preset}) -> {args.out}")
    if "teacher_init" in info:
        print(f"teacher LoRA, ID prompts and q/k/v biases -> {Path(args.out) / info['teacher_init']}")
    return 0


def add_import_command(subparsers) -> None:
    p = subparsers.add_parser("import", help="a released official DCAC checkpoint (source_*.pth) -> a dcac run folder")
    p.add_argument("checkpoint", help="the official .pth (torch.save(model.state_dict()) of the DCAC module)")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--config", help="preset or YAML of the checkpoint's setting (default: from the file name)")
    p.add_argument("--root", help="data root: check the identity count against the sources' training set")
    p.add_argument("--no-teacher", action="store_true", help="import only the Re-ID model (ignore denoiser.*)")
    p.add_argument("overrides", nargs="*", help="config overrides right after CHECKPOINT, e.g. data.root=/data")
    p.set_defaults(func=_cmd_import)
