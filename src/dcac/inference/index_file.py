"""Reading a gallery index file (``dcac index``) that may be damaged: every fault is one ``IndexFileError``
naming the file, never faiss's ``RuntimeError``/``TypeError``.

The metadata is checked first (each key present, of its type and in range, no unknown parameter), then the
faiss bytes are read (faiss checks its own header, sizes and counts) and the result is checked against the
metadata (index type, dimension, one name per vector).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

# The parameters a GalleryIndex is built with, each a positive int; larger values are no index of ours.
PARAMS = ("hnsw_m", "ef_search", "ivf_lists", "nprobe")
MAX_PARAM = 1 << 24
MAX_DIM = 1 << 20  # faiss's own limit on a stored dimension


class IndexFileError(ValueError):
    """A gallery index file that cannot be read; the message names the file and what is wrong."""


def _json(path: Path, metadata: dict[str, str], key: str) -> Any:
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as err:
        raise IndexFileError(f"{path}: metadata '{key}' is not JSON ({err.msg})") from None


def _positive_int(path: Path, key: str, value: Any, limit: int) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= limit:
        raise IndexFileError(f"{path}: metadata '{key}' is {value!r}, expected an integer from 1 to {limit}")
    return value


def checked_metadata(path: Path, metadata: dict[str, str], kinds: tuple[str, ...]) -> dict[str, Any]:
    """The index's ``dim``, ``kind``, ``params``, ``names`` and ``weights_sha256``, each checked."""
    missing = [key for key in ("dim", "kind", "params", "names") if key not in metadata]
    if missing:
        raise IndexFileError(f"{path}: metadata {missing[0]!r} is missing: not a complete dcac gallery index")
    if metadata["kind"] not in kinds:
        raise IndexFileError(f"{path}: metadata 'kind' is {metadata['kind']!r}, expected one of {kinds}")
    params = _json(path, metadata, "params")
    if not isinstance(params, dict) or set(params) - set(PARAMS):
        unknown = sorted(set(params) - set(PARAMS)) if isinstance(params, dict) else params
        raise IndexFileError(f"{path}: metadata 'params' has {unknown!r}; expected keys among {PARAMS}")
    names = _json(path, metadata, "names")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise IndexFileError(f"{path}: metadata 'names' is not a list of image names")
    return {
        "dim": _positive_int(path, "dim", metadata["dim"], MAX_DIM),
        "kind": metadata["kind"],
        "params": {key: _positive_int(path, f"params.{key}", value, MAX_PARAM) for key, value in params.items()},
        "names": names,
        "weights_sha256": metadata.get("weights_sha256", ""),
    }


def _faiss_reason(err: Exception) -> str:
    """faiss's message without its C++ function signature and source location."""
    message = " ".join(str(err).split())
    return re.sub(r"^Error in .*? at \S+:\d+: (Error: )?", "", message)


def read_faiss_index(path: Path, blob, faiss, expected: dict[str, Any]):
    """The faiss index serialised in ``blob``, checked to be the ``kind`` and ``dim`` the metadata says."""
    try:
        index = faiss.deserialize_index(blob)
    except (RuntimeError, TypeError, MemoryError) as err:
        raise IndexFileError(f"{path}: the faiss index inside is damaged ({_faiss_reason(err)})") from None
    types = {"exact": faiss.IndexFlat, "hnsw": faiss.IndexHNSW, "ivf": faiss.IndexIVF}
    if not isinstance(index, types[expected["kind"]]):
        raise IndexFileError(f"{path}: metadata 'kind' says {expected['kind']} but it holds a {type(index).__name__}")
    if index.d != expected["dim"]:
        raise IndexFileError(f"{path}: metadata 'dim' says {expected['dim']} but the faiss index is {index.d}-d")
    if index.ntotal != len(expected["names"]):
        raise IndexFileError(
            f"{path}: {index.ntotal} indexed vectors but metadata 'names' has {len(expected['names'])}"
        )
    return index
