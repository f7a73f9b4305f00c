"""Checks of command-line arguments made before any work, so a bad ``--out`` or ``--device`` costs nothing.

Each failure is a ``ValueError`` whose one-line message names the argument and what was expected.
"""

from __future__ import annotations

import os
from pathlib import Path


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_creatable_under(path: Path, option: str) -> None:
    ancestor = _nearest_existing(path)
    if not ancestor.is_dir():
        raise ValueError(f"{option} {path}: {ancestor} is a file, but a folder is needed there")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: cannot write into {ancestor} (permission denied)")


def check_output_file(path: str | Path, option: str = "--out") -> Path:
    """``path`` can be written as a file: not a folder, and its folder exists or can be created and written."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; expected a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{option} {path}: the file is not writable (permission denied)")
    _check_creatable_under(path.parent, option)
    return path


def check_output_dir(path: str | Path, option: str = "--out") -> Path:
    """``path`` can be used as an output folder: a writable folder, or creatable as one."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is a file; expected a folder")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: cannot write into the folder (permission denied)")
    _check_creatable_under(path, option)
    return path


def resolve_device(name: str | None) -> str:
    """``--device``: the named device, refused if it is a CUDA device this machine lacks; default cuda if present."""
    import torch

    if not name:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {name}: CUDA is not available here (no GPU, or a CPU-only torch); use --device cpu"
            )
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return name


def add_on_corrupt_argument(parser) -> None:
    parser.add_argument(
        "--on-corrupt",
        choices=("raise", "skip"),
        default="raise",
        help="an unreadable image stops the command (raise) or is skipped and counted (skip)",
    )


def unit_interval(text: str) -> float:
    """argparse type of a number in [0, 1] (e.g. ``--alpha``)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def add_checkpoint_argument(parser, *, hub: bool = True) -> None:
    """``--checkpoint``: a run folder, its weights file, or (``hub``) a Hub id of a pushed run."""
    what = "run folder (or its reid_model.safetensors)" + (", or a Hub id org/name" if hub else "")
    parser.add_argument("--checkpoint", required=True, help=what)


def add_device_argument(parser) -> None:
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")


def add_dataset_option_argument(parser) -> None:
    """``--option DATASET.KEY=VALUE`` of the commands that load target datasets by name (eval, calibrate)."""
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="DATASET.KEY=VALUE",
        help="a dataset loader option (repeatable), e.g. msmt17.use_val=false, grid.split=3, "
        "shop.layout=folders; added to the run's data.options",
    )
