"""ImageRecord / ReIDDataset conventions: junk dropped, sorted relabelling, validation, summary."""

from __future__ import annotations

import pytest

from dcac.data.errors import EmptySplitError
from dcac.data.records import ImageRecord, ReIDDataset, relabel_pids, sorted_label_map


def rec(pid: int, camid: int = 0, name: str = "x") -> ImageRecord:
    return ImageRecord(f"/img/{name}_{pid}_{camid}.jpg", pid, camid, "toy")


def test_sorted_label_map_is_independent_of_input_order() -> None:
    assert sorted_label_map([30, 5, 12, 5]) == {5: 0, 12: 1, 30: 2}
    assert sorted_label_map([12, 30, 5]) == sorted_label_map([5, 5, 30, 12])


def test_relabel_keeps_paths_and_cameras() -> None:
    records = [rec(30, 2), rec(5, 1), rec(12, 0), rec(30, 3)]
    assert [(r.pid, r.camid) for r in relabel_pids(records)] == [(2, 2), (0, 1), (1, 0), (2, 3)]


def test_from_splits_drops_junk_keeps_distractors_and_original_test_pids() -> None:
    dataset = ReIDDataset.from_splits(
        "toy",
        "/root",
        train=[rec(9, 1), rec(-1), rec(4, 0)],
        query=[rec(3), rec(-1)],
        gallery=[rec(3, 1), rec(0, 2), rec(-1)],
    )
    assert sorted(r.pid for r in dataset.train) == [0, 1]
    assert [r.pid for r in dataset.query] == [3]
    assert sorted(r.pid for r in dataset.gallery) == [0, 3]
    assert dataset.num_train_pids == 2
    assert dataset.num_train_cams == 2


@pytest.mark.parametrize("split", ["train", "query", "gallery"])
def test_empty_split_raises(split: str) -> None:
    splits = {"train": [rec(1)], "query": [rec(2)], "gallery": [rec(2, 1)]}
    splits[split] = [rec(-1)]  # only junk: empty after dropping it
    with pytest.raises(EmptySplitError, match=split):
        ReIDDataset.from_splits("toy", "/root", **splits)


def test_train_only_dataset_allows_empty_query_and_gallery() -> None:
    dataset = ReIDDataset.from_splits("toy", "/root", train=[rec(5)], query=[], gallery=[], train_only=True)
    assert dataset.num_train_pids == 1


def test_constructor_rejects_unrelabelled_train() -> None:
    with pytest.raises(ValueError, match="0..N-1"):
        ReIDDataset("toy", "/root", train=[rec(5)], query=[rec(1)], gallery=[rec(1)])


def test_summary_table_counts() -> None:
    dataset = ReIDDataset.from_splits(
        "toy", "/root", train=[rec(9, 1), rec(9, 0), rec(4, 0)], query=[rec(3)], gallery=[rec(3, 1), rec(0, 2)]
    )
    rows = {
        line.split("|")[0].strip(): [int(v) for v in line.split("|")[1:]]
        for line in dataset.summary().splitlines()
        if line.strip().split(" ")[0] in ("train", "query", "gallery")
    }
    assert rows == {"train": [2, 3, 2], "query": [1, 1, 1], "gallery": [2, 2, 2]}
