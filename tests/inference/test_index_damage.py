"""A damaged gallery index file: one error naming the file, never faiss's RuntimeError/TypeError (issue 22, item 13).

Each case starts from a good index file and damages one part: the faiss bytes (corrupt, zeroed, cut short,
a header claiming 10¹² vectors, another dimension) or the metadata (an unknown parameter, a bad dim/kind/names).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

faiss = pytest.importorskip("faiss", reason="the [ann] extra (faiss-cpu) is not installed")

from dcac.cli import main  # noqa: E402
from dcac.inference.ann_index import GalleryIndex  # noqa: E402

DIM = 8


def _good_index(path: Path, kind: str = "exact") -> Path:
    index = GalleryIndex(DIM, kind, hnsw_m=4)
    index.add(F.normalize(torch.randn(6, DIM, generator=torch.Generator().manual_seed(0)), dim=1), list("abcdef"))
    return index.save(path)


def _rewrite(path: Path, blob: bytes | None = None, **metadata: str) -> None:
    with safe_open(str(path), framework="pt") as handle:
        old_metadata = handle.metadata()
        old_blob = handle.get_tensor("faiss_index")
    tensor = old_blob if blob is None else torch.tensor(list(blob), dtype=torch.uint8)
    save_file({"faiss_index": tensor}, str(path), metadata={**old_metadata, **metadata})


def _blob(path: Path) -> bytes:
    with safe_open(str(path), framework="pt") as handle:
        return handle.get_tensor("faiss_index").numpy().tobytes()


def _damaged_blobs(good: bytes) -> dict[str, bytes]:
    claims_1e12 = bytearray(good)
    claims_1e12[8:16] = struct.pack("<q", 10**12)  # IndexFlat header: fourcc, d (int32), ntotal (int64)
    other_dim = bytearray(good)
    other_dim[4:8] = struct.pack("<i", DIM * 2)
    return {
        "corrupt": bytes(b ^ 0x5A for b in good),
        "zeroed": bytes(len(good)),
        "short": good[: len(good) // 3],
        "empty": b"",
        "claims 10^12 vectors": bytes(claims_1e12),
        "another dimension": bytes(other_dim),
    }


@pytest.mark.parametrize("case", ["corrupt", "zeroed", "short", "empty", "claims 10^12 vectors", "another dimension"])
def test_damaged_faiss_bytes_name_the_file(tmp_path, case):
    path = _good_index(tmp_path / "g.index")
    _rewrite(path, _damaged_blobs(_blob(path))[case])
    with pytest.raises(ValueError) as caught:
        GalleryIndex.load(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message, message


@pytest.mark.parametrize(
    "metadata",
    [
        {"params": json.dumps({"hnsw_m": 4, "ef_search": 64, "ivf_lists": 1024, "nprobe": 16, "unknown": 1})},
        {"params": json.dumps({"hnsw_m": "many"})},
        {"params": "[1, 2"},
        {"dim": "eight"},
        {"dim": "-3"},
        {"dim": "16"},
        {"kind": "lsh"},
        {"kind": "hnsw"},
        {"names": "{not json"},
        {"names": json.dumps({"a": 1})},
        {"names": json.dumps(list("abc"))},
    ],
)
def test_damaged_metadata_names_the_file_and_key(tmp_path, metadata):
    path = _good_index(tmp_path / "g.index")
    _rewrite(path, **metadata)
    with pytest.raises(ValueError) as caught:
        GalleryIndex.load(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message, message
    assert next(iter(metadata)) in message, message


def test_a_metadata_key_missing_names_it(tmp_path):
    path = _good_index(tmp_path / "g.index")
    with safe_open(str(path), framework="pt") as handle:
        metadata = {k: v for k, v in handle.metadata().items() if k != "params"}
        blob = handle.get_tensor("faiss_index")
    save_file({"faiss_index": blob}, str(path), metadata=metadata)
    with pytest.raises(ValueError, match="'params' is missing"):
        GalleryIndex.load(path)


def test_search_with_a_damaged_index_is_one_line(tiny_run, image_tree, tmp_path, capsys):
    feats, index = tmp_path / "g.safetensors", tmp_path / "g.index"
    assert main(["extract", str(image_tree["gallery"]), "--checkpoint", str(tiny_run), "--out", str(feats)]) == 0
    assert main(["index", str(feats), "--out", str(index), "--kind", "hnsw", "--hnsw-m", "4"]) == 0
    _rewrite(index, _blob(index)[:100])
    capsys.readouterr()
    search = ["search", str(image_tree["query"]), "--gallery", str(index), "--checkpoint", str(tiny_run)]
    assert main([*search, "--out", str(tmp_path / "r")]) == 2
    assert main(["index", str(feats), "--out", str(index), "--append"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("dcac ")]
    assert len(lines) == 2 and all(str(index) in line for line in lines), err


def test_good_indexes_of_every_kind_still_load(tmp_path):
    for kind in ("exact", "hnsw"):
        loaded = GalleryIndex.load(_good_index(tmp_path / f"{kind}.index", kind))
        assert loaded.kind == kind and len(loaded) == 6 and loaded.names == list("abcdef")
