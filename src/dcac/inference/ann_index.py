"""A persistent gallery index for large galleries: exact by default, HNSW or IVF (faiss) when asked.

``GalleryIndex`` holds L2-normalised gallery features with their image names and answers top-k queries
in squared Euclidean distance, like ``dcac.rank``:

- ``exact`` (default): ``faiss.IndexFlatL2``, every gallery entry compared, the same ranking as ``rank``;
- ``hnsw``: ``faiss.IndexHNSWFlat`` (graph search; ``hnsw_m`` links per node, ``ef_search`` breadth);
- ``ivf``: ``faiss.IndexIVFFlat`` (k-means cells, ``nprobe`` of them searched; trained on the first batch
  added, which must hold at least ``ivf_lists`` vectors).

All three take ``add`` at any time (incremental galleries).  ``save`` writes one safetensors file: the faiss
index serialised to bytes (``faiss.serialize_index``: no pickle) plus names, kind, parameters and the
weights hash of the model the features came from (``dcac.inference.feature_store.file_sha256``) in its metadata.
Needs ``pip install 'dcac[ann]'`` (faiss-cpu).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from dcac.inference.index_file import checked_metadata, read_faiss_index
from dcac.storage.checkpoint import save_tensors_atomic

INDEX_FORMAT = "dcac-gallery-index/1"
KINDS = ("exact", "hnsw", "ivf")


def _faiss():
    try:
        import faiss
    except ImportError as err:
        raise ImportError("the gallery index needs faiss: pip install 'dcac[ann]' (faiss-cpu)") from err
    return faiss


def _matrix(features: torch.Tensor | np.ndarray, dim: int | None, what: str) -> np.ndarray:
    array = np.ascontiguousarray(torch.as_tensor(features).float().cpu().numpy())
    if array.ndim != 2 or (dim is not None and array.shape[1] != dim):
        raise ValueError(f"{what}: expected a (num_images, {dim or 'dim'}) matrix, got shape {array.shape}")
    return array


class GalleryIndex:
    def __init__(
        self,
        dim: int,
        kind: str = "exact",
        *,
        hnsw_m: int = 32,
        ef_search: int = 64,
        ivf_lists: int = 1024,
        nprobe: int = 16,
        weights_sha256: str = "",
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"index kind: expected one of {KINDS}, got {kind!r}")
        faiss = _faiss()
        self.dim, self.kind, self.weights_sha256 = dim, kind, weights_sha256
        self.params = {"hnsw_m": hnsw_m, "ef_search": ef_search, "ivf_lists": ivf_lists, "nprobe": nprobe}
        self.names: list[str] = []
        if kind == "exact":
            self.index = faiss.IndexFlatL2(dim)
        elif kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(dim, hnsw_m)
            self.index.hnsw.efSearch = ef_search
        else:
            self._quantizer = faiss.IndexFlatL2(dim)  # the IVF index keeps a pointer: it must outlive it
            self.index = faiss.IndexIVFFlat(self._quantizer, dim, ivf_lists)
            self.index.nprobe = nprobe

    def __len__(self) -> int:
        return self.index.ntotal

    def add(self, features: torch.Tensor | np.ndarray, names: Sequence[str]) -> None:
        """Append gallery entries (rows of ``features`` named by ``names``)."""
        array = _matrix(features, self.dim, "gallery features")
        if len(names) != array.shape[0]:
            raise ValueError(f"{array.shape[0]} gallery features but {len(names)} names")
        if not self.index.is_trained:
            if array.shape[0] < self.params["ivf_lists"]:
                raise ValueError(
                    f"an IVF index with {self.params['ivf_lists']} lists is trained on its first batch: "
                    f"add at least {self.params['ivf_lists']} features first (got {array.shape[0]})"
                )
            self.index.train(array)
        self.index.add(array)
        self.names.extend(str(n) for n in names)

    def search(self, query: torch.Tensor | np.ndarray, topk: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        """``(indices, distances)`` of the ``topk`` nearest entries per query (squared Euclidean, nearest first)."""
        if len(self) == 0:
            raise ValueError("the gallery index is empty: nothing to rank")
        k = min(topk, len(self))
        distances, indices = self.index.search(_matrix(query, self.dim, "query features"), k)
        return torch.from_numpy(indices).long(), torch.from_numpy(distances).clamp_(min=0.0)

    def save(self, path: str | Path) -> Path:
        blob = torch.from_numpy(_faiss().serialize_index(self.index).copy())
        metadata = {
            "format": INDEX_FORMAT,
            "kind": self.kind,
            "dim": str(self.dim),
            "names": json.dumps(self.names),
            "params": json.dumps(self.params),
            "weights_sha256": self.weights_sha256,
        }
        save_tensors_atomic({"faiss_index": blob}, path, metadata=metadata)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> GalleryIndex:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"gallery index not found: {path}")
        metadata, blob = _read(path)
        checked = checked_metadata(path, metadata, KINDS)
        index = cls(checked["dim"], checked["kind"], weights_sha256=checked["weights_sha256"], **checked["params"])
        index.index = read_faiss_index(path, blob, _faiss(), checked)
        index.names = checked["names"]
        return index


def _read(path: Path) -> tuple[dict[str, Any], np.ndarray]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            blob = handle.get_tensor("faiss_index").numpy()
    except Exception as err:  # safetensors raises several error types for a truncated/corrupt file
        raise ValueError(f"cannot read gallery index {path}: {err}") from err
    if metadata.get("format") != INDEX_FORMAT:
        raise ValueError(f"{path} metadata 'format' is {metadata.get('format')!r}, expected {INDEX_FORMAT!r}")
    return metadata, blob


def is_index_file(path: str | Path) -> bool:
    """Whether ``path`` is a file ``GalleryIndex.save`` wrote (and not, say, an ``extract`` features file)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("format") == INDEX_FORMAT
    except Exception:
        return False
