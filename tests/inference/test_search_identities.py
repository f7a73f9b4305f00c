"""``dcac search`` colours matches by the identities a folder-per-identity dataset or a CSV list carries, and
writes each image's file name under its thumbnail."""

from __future__ import annotations

import json

import pytest

from dcac.cli import main
from dcac.data.datasets.custom import load_custom


@pytest.fixture(scope="module")
def folders_dataset(tmp_path_factory, draw_person):
    """``shop/{query,gallery}/<person>/<camera>/<image>``: 3 people, named (not numbered) folders."""
    root = tmp_path_factory.mktemp("shop")
    for index, person in enumerate(("ann", "ben", "cid")):
        for split, camera, variant in (("query", "cam1", 0), ("gallery", "cam2", 1), ("gallery", "cam3", 2)):
            folder = root / split / person / camera
            folder.mkdir(parents=True)
            draw_person(100 * index + variant).save(folder / f"{person}_{variant}.png")
    return root


def _search(tiny_run, out, queries, gallery):
    argv = ["search", *map(str, queries), "--gallery", str(gallery), "--checkpoint", str(tiny_run)]
    assert main(argv + ["--device", "cpu", "--topk", "6", "--out", str(out)]) == 0
    return json.loads((out / "results.json").read_text())["queries"], (out / "results.html").read_text()


def _expected_matches(queries, dataset):
    pid_of = {str(p): pid for p, pid in ((r.path, r.pid) for r in dataset.query + dataset.gallery)}
    for query in queries:
        for result in query["results"]:
            assert result["match"] == (pid_of[result["path"]] == pid_of[query["query"]])


def test_folder_per_identity_search_knows_the_identities(folders_dataset, tiny_run, tmp_path):
    queries, page = _search(tiny_run, tmp_path / "s", [folders_dataset / "query"], folders_dataset / "gallery")
    dataset = load_custom(folders_dataset)
    assert len(queries) == 3 and all(q["pid"] is not None for q in queries)
    assert {q["camid"] for q in queries} == {1}  # cam1 is the first camera folder (1-based on the page)
    assert sum(r["match"] for q in queries for r in q["results"]) == 3 * 2  # each person: two gallery images
    _expected_matches(queries, dataset)
    assert "3 of 3 queries have a known identity" in page
    assert '<div class="name">cam1/ann_0.png</div>' in page and '<div class="name">cam3/cid_2.png</div>' in page


def test_extract_file_of_a_folder_per_identity_gallery_keeps_them(folders_dataset, tiny_run, tmp_path):
    feats = tmp_path / "g.safetensors"
    argv = ["extract", str(folders_dataset / "gallery"), "--out", str(feats), "--checkpoint", str(tiny_run)]
    assert main(argv + ["--device", "cpu"]) == 0
    queries, _ = _search(tiny_run, tmp_path / "s", [folders_dataset / "query" / "ben"], feats)
    assert sum(r["match"] for r in queries[0]["results"]) == 2 and queries[0]["results"][0]["pid"] is not None


def test_csv_list_search_uses_its_query_and_gallery_rows(folders_dataset, tiny_run, tmp_path):
    listed = tmp_path / "list.csv"
    rows = ["path,pid,camid,split"]
    for split in ("query", "gallery"):
        for number, image in enumerate(sorted((folders_dataset / split).rglob("*.png"))):
            rows.append(f"{image},{ord(image.parent.parent.name[0])},{number % 2},{split}")
    listed.write_text("\n".join(rows) + "\n")
    queries, page = _search(tiny_run, tmp_path / "s", [listed], listed)
    assert len(queries) == 3 and {len(q["results"]) for q in queries} == {6}
    assert {q["pid"] for q in queries} == {ord("a"), ord("b"), ord("c")}
    _expected_matches(queries, load_custom(listed))
    assert page.count("#2e9e44") >= 6 and page.count("#d62728") >= 12  # green and red borders


@pytest.mark.parametrize(
    ("split", "message"), [("gallery", "no query split"), ("train", "train_only.csv has no gallery rows")]
)
def test_a_list_without_query_rows_is_named(folders_dataset, tiny_run, tmp_path, capsys, split, message):
    listed = tmp_path / f"{split}_only.csv"
    listed.write_text("".join(f"{p},1,0,{split}\n" for p in sorted((folders_dataset / "gallery").rglob("*.png"))))
    argv = ["search", str(listed), "--gallery", str(listed), "--checkpoint", str(tiny_run), "--device", "cpu"]
    assert main(argv + ["--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert message in err[0] and len(err) == 2
