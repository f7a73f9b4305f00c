"""A user's own dataset given by path: the three layouts, evaluation-only targets, several sources, bad input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import write_image

from dcac.data import get_dataset
from dcac.data.datasets.custom_rules import NO_CAMERA_RULE
from dcac.data.errors import DatasetLayoutError, EmptySplitError, ImageNameError
from dcac.data.protocols import build_protocol


def make_identity_folders(root: Path, *, cameras: bool, train: bool = True) -> Path:
    splits = {"query": {"alice": 1, "bob": 1}, "gallery": {"alice": 2, "bob": 1, "carol": 1}}
    if train:
        splits["train"] = {"dave": 2, "erin": 3}
    for split, identities in splits.items():
        for identity, count in identities.items():
            for k in range(count):
                camera = f"cam{k % 2 + (split == 'gallery') + 1}/" if cameras else ""
                write_image(root / split / identity / f"{camera}{k}.jpg")
    return root


def test_market_layout_under_any_folder_name(
    tmp_path: Path, make_market_tree: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_market_tree(tmp_path / "my_shop")
    dataset = get_dataset(str(root), "unused", verbose=True)
    assert dataset.name == "my_shop" and dataset.root == str(root)
    assert dataset.num_train_pids == 3 and sorted({r.pid for r in dataset.gallery}) == [0, 1, 3]
    assert dataset.distractor_pids == {0}
    # cameras come from the names: query 0001 is c1, gallery 0001 is c2
    assert {(r.pid, r.camid) for r in dataset.query} == {(1, 0), (3, 1)}
    assert "layout: market (detected)" in capsys.readouterr().out


def test_market_layout_without_train_is_evaluation_only(tmp_path: Path, make_market_tree: Callable[..., Path]) -> None:
    root = make_market_tree(tmp_path / "shop_b")
    for image in (root / "bounding_box_train").iterdir():
        image.unlink()
    (root / "bounding_box_train").rmdir()
    dataset = get_dataset(str(root), "")
    assert dataset.eval_only and dataset.train == [] and len(dataset.query) == 2


def test_identity_folders_without_cameras_follow_the_no_camera_rule(tmp_path: Path) -> None:
    dataset = get_dataset(str(make_identity_folders(tmp_path / "shop", cameras=False)), "")
    assert "layout: folders (detected)" in dataset.notes and NO_CAMERA_RULE in dataset.notes
    # names are numbered over all splits in sorted order: alice 0, bob 1, carol 2, dave 3, erin 4
    assert sorted((r.pid, r.camid) for r in dataset.query) == [(0, 0), (1, 0)]
    assert sorted((r.pid, r.camid) for r in dataset.gallery) == [(0, 1), (0, 1), (1, 1), (2, 1)]
    assert {r.camid for r in dataset.train} == {0} and dataset.num_train_pids == 2


def test_identity_folders_with_camera_folders(tmp_path: Path) -> None:
    dataset = get_dataset(str(make_identity_folders(tmp_path / "shop", cameras=True)), "", layout="folders")
    assert "layout: folders (as asked)" in dataset.notes and NO_CAMERA_RULE not in dataset.notes
    # camera folders cam1, cam2, cam3 -> 0, 1, 2
    assert sorted(r.camid for r in dataset.gallery) == [1, 1, 1, 2]


def write_csv(path: Path, rows: list[str], images: list[str]) -> Path:
    for image in images:
        write_image(path.parent / image)
    path.write_text("\n".join(rows) + "\n")
    return path


def test_csv_list_with_splits_and_cameras(tmp_path: Path) -> None:
    images = ["img/a.jpg", "img/b.jpg", "img/c.jpg", "img/d.jpg", "img/e.jpg"]
    rows = [
        "path,pid,camid,split",
        "img/a.jpg,5,1,train",
        "img/b.jpg,5,2,train",
        "img/c.jpg,9,1,query",
        "img/d.jpg,9,2,gallery",
        "img/e.jpg,-1,2,gallery",
    ]
    dataset = get_dataset(str(write_csv(tmp_path / "shop" / "list.csv", rows, images)), "")
    assert dataset.name == "list" and "layout: csv (detected)" in dataset.notes
    assert [(Path(r.path).name, r.pid, r.camid) for r in dataset.train] == [("a.jpg", 0, 1), ("b.jpg", 0, 2)]
    assert [(r.pid, r.camid) for r in dataset.query] == [(9, 1)]
    assert [(Path(r.path).name, r.pid) for r in dataset.gallery] == [("d.jpg", 9)]  # junk -1 dropped


def test_csv_without_split_column_is_a_training_only_source(tmp_path: Path) -> None:
    rows = ["a.jpg,1,", "b.jpg,1,", "c.jpg,2,"]
    dataset = get_dataset(str(write_csv(tmp_path / "l.csv", rows, ["a.jpg", "b.jpg", "c.jpg"])), "")
    assert dataset.train_only and dataset.num_train_pids == 2 and NO_CAMERA_RULE in dataset.notes


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a.jpg,one,1,train", "line 2: pid 'one' is not an integer"),
        ("a.jpg,1", "line 2: expected 'path,pid,camid[,split]'"),
        ("missing.jpg,1,1,train", "line 2: image"),
        ("a.jpg,1,1,test", "line 2: split 'test' is not one of"),
    ],
)
def test_csv_bad_rows_name_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    path = write_csv(tmp_path / "l.csv", ["a.jpg,1,1,train", row], ["a.jpg"])
    with pytest.raises((ImageNameError, DatasetLayoutError)) as info:
        get_dataset(str(path), "")
    assert str(path) in str(info.value) and message in str(info.value)


def test_csv_bad_rows_skipped_and_counted_when_asked(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "l.csv", ["a.jpg,1,1", "missing.jpg,1,1", "b.jpg,x,1", "b.jpg,2,1"], ["a.jpg", "b.jpg"])
    dataset = get_dataset(str(path), "", on_error="skip")
    assert len(dataset.train) == 2
    assert any(note.startswith("skipped 2 bad entries") and "line 2" in note for note in dataset.notes)


def test_empty_split_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    root = make_identity_folders(tmp_path / "shop", cameras=False)
    (root / "train" / "empty_split_marker").mkdir()
    (tmp_path / "shop2" / "query").mkdir(parents=True)
    with pytest.raises(EmptySplitError, match="shop2/query"):
        get_dataset(str(tmp_path / "shop2"), "")


def test_query_without_gallery_is_an_error(tmp_path: Path) -> None:
    write_image(tmp_path / "shop" / "query" / "p1" / "a.jpg")
    with pytest.raises(EmptySplitError, match="no gallery split"):
        get_dataset(str(tmp_path / "shop"), "")


def test_unknown_layout_lists_the_three(tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DatasetLayoutError, match="bounding_box_train.*\n.*|folders:"):
        get_dataset(str(tmp_path / "nothing"), "")


def test_two_custom_sources_with_own_roots_and_an_evaluation_only_target(
    tmp_path: Path, make_market_tree: Callable[..., Path]
) -> None:
    shop_a = make_market_tree(tmp_path / "a" / "shop_a")
    shop_b = make_identity_folders(tmp_path / "b" / "shop_b", cameras=True)
    target = make_identity_folders(tmp_path / "c" / "shop_c", cameras=False, train=False)
    protocol = build_protocol(
        [str(shop_a), str(shop_b)], [str(target)], root="unused", dataset_options={"shop_b": {"layout": "folders"}}
    )
    train = protocol.train
    assert train.sources == ("shop_a", "shop_b")
    assert train.id_offsets == {"shop_a": 0, "shop_b": 3} and train.cam_offsets == {"shop_a": 0, "shop_b": 6}
    assert train.num_ids == 5 and sorted(set(train.pids)) == [0, 1, 2, 3, 4]
    assert {r.camid for r in train.records if r.dataset == "shop_b"} == {6, 7}  # cam1, cam2 after offset 6
    assert list(protocol.targets) == ["shop_c"] and protocol.targets["shop_c"].eval_only


def test_evaluation_only_dataset_cannot_be_a_source(tmp_path: Path) -> None:
    target = make_identity_folders(tmp_path / "shop_c", cameras=False, train=False)
    with pytest.raises(ValueError, match="evaluation-only"):
        build_protocol([str(target)], [str(target)], root="unused")


def test_two_sources_with_the_same_name_are_refused(tmp_path: Path, make_market_tree: Callable[..., Path]) -> None:
    first, second = make_market_tree(tmp_path / "x" / "shop"), make_market_tree(tmp_path / "y" / "shop")
    with pytest.raises(ValueError, match="two sources are named 'shop'"):
        build_protocol([str(first), str(second)], [str(first)], root="unused")
