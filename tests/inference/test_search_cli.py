"""``dcac extract`` and ``dcac search`` through the real CLI entry point."""

from __future__ import annotations

import json
import re

import torch

import dcac.api as api
from dcac.cli import main
from dcac.data.datasets.market_layout import match_market_name
from dcac.inference.feature_store import load_features
from dcac.inference.image_inputs import find_images


def test_market_names():
    assert match_market_name("/x/0002_c1s1_000451_03.jpg") == (2, 1)
    assert match_market_name("-1_c3s2_000001_00.jpg") == (-1, 3)
    assert match_market_name("0012_c14_0001.jpg") == (12, 14)
    assert match_market_name("holiday.jpg") is None


def test_extract_writes_features_and_names(tiny_run, image_tree, tmp_path):
    out = tmp_path / "gallery.safetensors"
    assert (
        main(
            ["extract", str(image_tree["gallery"]), "--checkpoint", str(tiny_run), "--out", str(out), "--device", "cpu"]
        )
        == 0
    )
    stored = load_features(out)
    files = find_images(image_tree["gallery"])
    assert stored.names == [f.name for f in files] and stored.after_bn
    torch.testing.assert_close(stored.features, api.load(tiny_run).extract(files))
    assert stored.paths() == [f.resolve() for f in files]


def _check_results(results: dict, image_tree) -> None:
    queries = results["queries"]
    assert [q["query"].rsplit("/", 1)[-1] for q in queries] == ["0001_c3s1_000002_00.png", "0003_c3s1_000002_00.png"]
    for q in queries:
        ranked = q["results"]
        assert [r["rank"] for r in ranked] == [1, 2, 3, 4, 5]
        distances = [r["distance"] for r in ranked]
        assert distances == sorted(distances)
        # The query is a near-copy of its identity's camera-1 gallery image.
        assert ranked[0]["path"].endswith(f"{q['pid']:04d}_c1s1_000001_00.jpg") and ranked[0]["match"] is True
        assert all(r["match"] == (r["pid"] == q["pid"]) for r in ranked)
        assert q["camid"] == 3


def test_search_against_a_folder_and_a_features_file(tiny_run, image_tree, tmp_path):
    common = ["--checkpoint", str(tiny_run), "--topk", "5", "--device", "cpu"]
    folder_out = tmp_path / "by_folder"
    assert (
        main(
            [
                "search",
                str(image_tree["query"]),
                "--gallery",
                str(image_tree["gallery"]),
                "--out",
                str(folder_out),
                *common,
            ]
        )
        == 0
    )
    by_folder = json.loads((folder_out / "results.json").read_text())
    _check_results(by_folder, image_tree)

    feats = tmp_path / "g.safetensors"
    assert main(["extract", str(image_tree["gallery"]), "--checkpoint", str(tiny_run), "--out", str(feats)]) == 0
    file_out = tmp_path / "by_file"
    assert main(["search", str(image_tree["query"]), "--gallery", str(feats), "--out", str(file_out), *common]) == 0
    by_file = json.loads((file_out / "results.json").read_text())
    for a, b in zip(by_folder["queries"], by_file["queries"]):
        assert [r["path"] for r in a["results"]] == [r["path"] for r in b["results"]]

    page = (folder_out / "results.html").read_text()
    # 2 query thumbnails + 2 × 5 results, all embedded; borders coloured by match.
    assert len(re.findall(r'src="data:image/jpeg;base64,', page)) == 12
    assert page.count("border-color:#2e9e44") >= 2 and "border-color:#d62728" in page
    assert "file://" not in page and 'src="/' not in page


def test_search_refuses_mixed_features(tiny_run, image_tree, tmp_path, capsys):
    feats = tmp_path / "g.safetensors"
    assert (
        main(["extract", str(image_tree["gallery"]), "--checkpoint", str(tiny_run), "--out", str(feats), "--before-bn"])
        == 0
    )
    code = main(
        [
            "search",
            str(image_tree["query"]),
            "--gallery",
            str(feats),
            "--checkpoint",
            str(tiny_run),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "holds f features" in capsys.readouterr().err
    code = main(
        [
            "search",
            str(image_tree["query"]),
            "--gallery",
            str(feats),
            "--checkpoint",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "not a dcac run folder" in capsys.readouterr().err


def test_search_refuses_features_of_other_weights(run_factory, tiny_run, image_tree, tmp_path, capsys):
    import shutil

    feats = tmp_path / "g.safetensors"
    assert main(["extract", str(image_tree["gallery"]), "--checkpoint", str(tiny_run), "--out", str(feats)]) == 0
    other = run_factory(tmp_path / "run_b", seed=1)
    args = ["search", str(image_tree["query"]), "--gallery", str(feats), "--out", str(tmp_path / "o")]
    assert main([*args, "--checkpoint", str(other)]) == 2
    err = capsys.readouterr().err
    assert str(feats) in err and "re-extract the gallery" in err and "weights sha256" in err
    assert not (tmp_path / "o" / "results.json").exists()
    # The same weights under another path are the same feature space: accepted, without a warning.
    moved = tmp_path / "moved"
    shutil.copytree(tiny_run, moved)
    assert main([*args, "--checkpoint", str(moved)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_search_reranks_and_caps_the_page(tiny_run, image_tree, tmp_path):
    from dcac.evaluation import rerank_dense

    out = tmp_path / "o"
    code = main(
        [
            "search",
            str(image_tree["gallery"]),
            "--gallery",
            str(image_tree["gallery"]),
            "--checkpoint",
            str(tiny_run),
            "--topk",
            "3",
            "--rerank",
            "--html-queries",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["queries"]) == 8 and "re-ranked (k1=50, k2=15" in results["distance"]
    model = api.load(tiny_run)
    feats = model.extract(image_tree["gallery"])
    reference = rerank_dense(feats.double(), feats.double(), (50, 15, 0.3)).sort(dim=1, stable=True)
    files = find_images(image_tree["gallery"])
    for q, row in zip(results["queries"], reference.indices[:, :3].tolist()):
        assert [r["path"] for r in q["results"]] == [str(files[g]) for g in row]
    page = (out / "results.html").read_text()
    assert "showing the first 2 of 8 queries" in page
    assert len(re.findall(r'src="data:image/jpeg;base64,', page)) == 2 * (1 + 3)


def test_search_warns_when_a_features_file_records_no_weights_hash(tiny_run, image_tree, tmp_path, capsys):
    from dcac.inference.feature_store import FeatureSet, save_features

    feats = tmp_path / "old.safetensors"
    files = find_images(image_tree["gallery"])
    save_features(
        feats,
        FeatureSet(
            api.load(tiny_run).extract(files), [f.name for f in files], image_tree["gallery"], True, "somewhere"
        ),
    )
    assert (
        main(
            [
                "search",
                str(image_tree["query"]),
                "--gallery",
                str(feats),
                "--checkpoint",
                str(tiny_run),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "warning" in err and "records no weights hash" in err and str(feats) in err
