"""``dcac data split``: own photos, one folder per person (with or without camera folders) -> query/gallery list."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dcac.cli import main
from dcac.data.check import check_dataset
from dcac.data.datasets.custom import load_custom
from dcac.data.datasets.custom_rules import NO_CAMERA_RULE

# person -> camera -> number of images (camera None: no camera folders)
WITH_CAMERAS = {"alice": {"cam1": 2, "cam2": 3}, "bob": {"cam1": 4}, "carol": {"cam1": 1, "cam2": 1, "cam3": 2}}
WITHOUT_CAMERAS = {"0007": {None: 3}, "0012": {None: 1}, "0042": {None: 2}}


def _photos(root, people, seed=0):
    rng = np.random.default_rng(seed)
    for person, cameras in people.items():
        for camera, count in cameras.items():
            folder = root / person / camera if camera else root / person
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (16, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def _resolved(records) -> set[Path]:
    return {Path(r.path).resolve() for r in records}


def test_split_with_cameras_gives_each_query_a_match_from_another_camera(tmp_path, capsys):
    photos = _photos(tmp_path / "photos", WITH_CAMERAS)
    out = tmp_path / "lists" / "photos.csv"
    assert main(["data", "split", str(photos), "--out", str(out), "--seed", "3"]) == 0
    said = capsys.readouterr().out
    assert "3 people, 13 images" in said and "1 people only in the gallery (seen by one camera only, e.g. bob)" in said
    dataset = load_custom(out)
    # alice: one query per camera (2), carol: one per camera while another camera keeps an image (2 of 3).
    assert len(dataset.query) == 4 and len(dataset.gallery) == 9 and not dataset.train
    assert len({r.path for r in dataset.query + dataset.gallery}) == 13
    report = check_dataset(dataset, num_workers=1)
    assert report.queries_without_match == 0 and not report.problems
    assert f"{len(dataset.query)} query images" in said
    assert {r.pid for r in dataset.query} == {0, 2}  # alice and carol, numbered in sorted name order
    again = tmp_path / "again.csv"
    assert main(["data", "split", str(photos), "--out", str(again), "--seed", "3"]) == 0
    assert _resolved(load_custom(again).query) == _resolved(dataset.query)


def test_split_without_cameras_keeps_integer_names_and_single_images_in_the_gallery(tmp_path, capsys):
    photos = _photos(tmp_path / "photos", WITHOUT_CAMERAS)
    out = tmp_path / "photos.csv"
    assert main(["data", "split", str(photos), "--out", str(out)]) == 0
    assert "(a single image, e.g. 0012)" in capsys.readouterr().out
    dataset = load_custom(out)
    assert sorted(r.pid for r in dataset.query) == [7, 42]
    assert sorted(r.pid for r in dataset.gallery) == [7, 7, 12, 42]
    assert NO_CAMERA_RULE in dataset.notes


def test_the_seed_chooses_the_queries(tmp_path):
    photos = _photos(tmp_path / "photos", {f"p{i}": {None: 5} for i in range(6)})
    chosen = []
    for seed in (0, 1):
        assert main(["data", "split", str(photos), "--out", str(tmp_path / f"{seed}.csv"), "--seed", str(seed)]) == 0
        chosen.append(_resolved(load_custom(tmp_path / f"{seed}.csv").query))
    assert chosen[0] != chosen[1]


def test_data_check_suggests_split_and_bad_folders_are_one_line(tmp_path, capsys):
    photos = _photos(tmp_path / "photos", WITH_CAMERAS)
    assert main(["data", "check", str(photos)]) == 2
    err = capsys.readouterr().err.splitlines()[0]
    assert "one folder per person" in err and f"dcac data split {photos} --out photos.csv" in err
    datasets = tmp_path / "datasets"
    _photos(datasets / "shop", {"bounding_box_test": {None: 1}})  # images right in a split folder
    assert main(["data", "check", str(datasets)]) == 2
    assert "one folder per person" not in capsys.readouterr().err  # a folder of datasets is not one
    lonely = _photos(tmp_path / "lonely", {"a": {"cam1": 2}, "b": {"cam2": 1}})
    assert main(["data", "split", str(lonely), "--out", str(tmp_path / "x.csv")]) == 2
    assert "no person has two images from two cameras" in capsys.readouterr().err
    mixed = _photos(tmp_path / "mixed", {"a": {"cam1": 2}, "b": {None: 2}})
    assert main(["data", "split", str(mixed), "--out", str(tmp_path / "y.csv")]) == 2
    assert "some people have camera sub-folders and some not" in capsys.readouterr().err


def test_the_list_paths_are_relative_to_the_list(tmp_path):
    photos = _photos(tmp_path / "photos", WITHOUT_CAMERAS)
    assert main(["data", "split", str(photos), "--out", str(tmp_path / "sub" / "photos.csv")]) == 0
    rows = (tmp_path / "sub" / "photos.csv").read_text().splitlines()
    assert rows[0] == "path,pid,camid,split" and rows[1].startswith("../photos/")


def test_the_module_imports_first():
    """``dcac data split`` imports it before the dataset package, which imports it back."""
    done = subprocess.run([sys.executable, "-c", "import dcac.data.person_folders_split"], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
