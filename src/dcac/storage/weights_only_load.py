"""``torch.load(weights_only=True)`` with errors that name the file in one line.

torch's own refusal spans many lines and ends by suggesting ``weights_only=False``, which would run the
file's code; dcac never does that, so the advice is left out and only the refused global is named.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


class WeightsFileError(ValueError):
    """A pickled weights file that cannot be read safely or at all (the message names it)."""


def load_weights_only(path: str | Path) -> Any:
    """The object pickled in ``path``, loaded to the CPU with only tensors and plain containers allowed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = _REFUSED_GLOBAL.search(str(err))
        what = f"it pickles {refused.group(1)}" if refused else "it pickles objects other than tensors"
        raise WeightsFileError(
            f"{path}: refused ({what}); dcac reads only tensors from pickled files: "
            "convert it to .safetensors where you trust its source"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, KeyError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsFileError(f"{path}: cannot be read as a torch file (damaged or not one): {first_line}") from None
