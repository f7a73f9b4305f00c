"""GalleryIndex (faiss): exact equals dcac.rank; HNSW/IVF recall; incremental adds; save/load; the CLI."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

faiss = pytest.importorskip("faiss", reason="the [ann] extra (faiss-cpu) is not installed")

from dcac.cli import main  # noqa: E402
from dcac.inference.ann_index import GalleryIndex, is_index_file  # noqa: E402
from dcac.inference.ranking import rank  # noqa: E402


def _feats(n: int, d: int = 32, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_exact_index_ranks_like_rank_and_survives_save_load_and_adds(tmp_path):
    gallery, query = _feats(500, seed=1), _feats(20, seed=2)
    names = [f"g{i}.jpg" for i in range(500)]
    index = GalleryIndex(32)
    index.add(gallery[:300], names[:300])
    path = index.save(tmp_path / "g.index")
    assert is_index_file(path)
    loaded = GalleryIndex.load(path)
    loaded.add(gallery[300:], names[300:])  # incremental: the rest later
    indices, distances = loaded.search(query, topk=10)
    ref_idx, ref_dist = rank(query, gallery, topk=10)
    assert torch.equal(indices, ref_idx) and loaded.names == names
    torch.testing.assert_close(distances, ref_dist, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "kind, params", [("hnsw", {"hnsw_m": 16, "ef_search": 128}), ("ivf", {"ivf_lists": 16, "nprobe": 8})]
)
def test_approximate_indexes_find_most_true_neighbours(kind, params, tmp_path):
    gallery, query = _feats(2000, seed=3), _feats(50, seed=4)
    index = GalleryIndex(32, kind, **params)
    index.add(gallery[:1500], [str(i) for i in range(1500)])
    index = GalleryIndex.load(index.save(tmp_path / f"{kind}.index"))
    index.add(gallery[1500:], [str(i) for i in range(1500, 2000)])
    got, _ = index.search(query, topk=10)
    exact, _ = rank(query, gallery, topk=10)
    recall = sum(len(set(a) & set(b)) for a, b in zip(got.tolist(), exact.tolist())) / exact.numel()
    assert recall > 0.8, recall


def test_ivf_needs_a_first_batch_to_train_on():
    with pytest.raises(ValueError, match="add at least 64 features first"):
        GalleryIndex(32, "ivf", ivf_lists=64).add(_feats(10), [str(i) for i in range(10)])
    with pytest.raises(ValueError, match="index kind"):
        GalleryIndex(32, "lsh")


def test_cli_index_then_search_gives_the_exact_search_results(tiny_run, image_tree, tmp_path):
    feats = tmp_path / "g.safetensors"
    assert main(["extract", str(image_tree["gallery"]), "--checkpoint", str(tiny_run), "--out", str(feats)]) == 0
    index = tmp_path / "g.index"
    assert main(["index", str(feats), "--out", str(index)]) == 0
    common = [str(image_tree["query"]), "--checkpoint", str(tiny_run), "--topk", "4"]
    assert main(["search", *common, "--gallery", str(index), "--out", str(tmp_path / "a")]) == 0
    assert main(["search", *common, "--gallery", str(feats), "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / o / "results.json").read_text())["queries"] for o in ("a", "b"))
    assert [[r["path"] for r in q["results"]] for q in a] == [[r["path"] for r in q["results"]] for q in b]
    assert main(["index", str(feats), "--out", str(index), "--append"]) == 0
    assert len(GalleryIndex.load(index)) == 16


def test_search_refuses_an_index_of_other_weights(run_factory, tiny_run, image_tree, tmp_path, capsys):
    feats, index = tmp_path / "g.safetensors", tmp_path / "g.index"
    assert main(["extract", str(image_tree["gallery"]), "--checkpoint", str(tiny_run), "--out", str(feats)]) == 0
    assert main(["index", str(feats), "--out", str(index), "--kind", "hnsw"]) == 0
    other = run_factory(tmp_path / "run_b", seed=3)
    code = main(
        [
            "search",
            str(image_tree["query"]),
            "--gallery",
            str(index),
            "--checkpoint",
            str(other),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "re-extract the gallery" in capsys.readouterr().err
