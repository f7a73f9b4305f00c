"""The public datasets read as the established toolkits read them: ids, options, partitions, cameras, names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import write_image, write_images
from test_dataset_loaders import _msmt_list_tree

from dcac.cli import main
from dcac.config import load_config
from dcac.data import get_dataset
from dcac.data.errors import DatasetLayoutError, EmptySplitError, ImageNameError
from dcac.data.protocols import build_protocol


def test_all_splits_keeps_msmt17_test_identity_0(tmp_path: Path) -> None:
    _msmt_list_tree(tmp_path / "MSMT17_V1")
    train = build_protocol(["ms"], ["ms"], tmp_path, all_splits=True).train
    # train ids {0, 1, 2} + test ids {0, 1}: MSMT17's 0 is a person, not a distractor
    assert train.num_ids == 5 and len(train.records) == 5 + 2 + 2


def test_all_splits_still_drops_market_distractors(tmp_path: Path, make_market_tree: Callable[..., Path]) -> None:
    make_market_tree(tmp_path / "market1501")
    train = build_protocol(["ma"], ["ma"], tmp_path, all_splits=True).train
    assert train.num_ids == 3 + 2 and all("0000_" not in Path(r.path).name for r in train.records)


def test_dataset_options_from_config_reach_the_loader(tmp_path: Path) -> None:
    _msmt_list_tree(tmp_path / "MSMT17_V1")
    config = load_config(None, ["data.options.msmt17.use_val=false", "data.options.ms.bogus=1"])
    assert config.data.options["msmt17"] == {"use_val": False}
    options = {"ms": {"use_val": False}}
    assert len(build_protocol(["ms"], ["ms"], tmp_path, dataset_options=options).train.records) == 3
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['bogus'\]"):  # short and full names merge
        build_protocol(["ms"], ["ms"], tmp_path, dataset_options=config.data.options)


def test_dataset_options_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _msmt_list_tree(tmp_path / "MSMT17_V1")
    assert main(["data", "stats", "ms", "--root", str(tmp_path), "--option", "use_val=false"]) == 0
    assert "train = list_train only" in capsys.readouterr().out
    assert main(["data", "stats", "ms", "--root", str(tmp_path), "--option", "bogus=1"]) == 2
    assert "unknown option(s) ['bogus']" in capsys.readouterr().err


def write_partitions(path: Path, train_ids: list[list[int]]) -> None:
    from scipy.io import savemat

    # The layout of the released file: trainIdxAll is a 1 x 10 cell array of 1 x 1 structs whose third
    # field holds the partition's 125 training identities as a 1 x 125 row.
    fields = [("idx_test", "O"), ("idx_probe", "O"), ("idx_train", "O")]
    cells = np.empty((1, len(train_ids)), dtype=object)
    for k, ids in enumerate(train_ids):
        struct = np.zeros((1, 1), dtype=fields)
        struct[0, 0]["idx_test"], struct[0, 0]["idx_probe"] = np.zeros((1, 1)), np.zeros((1, 1))
        struct[0, 0]["idx_train"] = np.array([ids], dtype=np.float64)
        cells[0, k] = struct
    savemat(str(path), {"trainIdxAll": cells})


def test_grid_reads_the_published_partitions(tmp_path: Path) -> None:
    pytest.importorskip("scipy")
    base = tmp_path / "grid" / "underground_reid"
    write_images(base / "probe", [f"{k:04d}_{k % 8 + 1}_25004_1_2_3_4.jpeg" for k in range(1, 9)])
    write_images(
        base / "gallery",
        [f"{k:04d}_{(k + 3) % 8 + 1}_25009_1_2_3_4.jpeg" for k in range(1, 9)] + ["0000_2_10001_1_2_3_4.jpeg"],
    )
    partitions = [[1, 2, 3, 4], [5, 6, 7, 8]] + [[1, 3, 5, 7]] * 8
    write_partitions(base / "features_and_partitions.mat", partitions)
    for split, train_ids in ((0, {1, 2, 3, 4}), (1, {5, 6, 7, 8}), (9, {1, 3, 5, 7})):
        dataset = get_dataset("grid", tmp_path, split=split)
        held_out = set(range(1, 9)) - train_ids
        assert {r.pid for r in dataset.query} == held_out
        assert {r.pid for r in dataset.gallery} == held_out | {0}
        assert dataset.num_train_pids == 4 and len(dataset.train) == 8
        assert any("published partition" in note for note in dataset.notes)
    with pytest.raises(ValueError, match="0..9"):
        get_dataset("grid", tmp_path, split=10)


def test_grid_without_partitions_file_says_it_draws_a_seeded_split(tmp_path: Path) -> None:
    base = tmp_path / "grid"
    write_images(base / "probe", [f"{k:04d}_1_x.jpeg" for k in range(1, 5)])
    write_images(base / "gallery", [f"{k:04d}_2_x.jpeg" for k in range(1, 5)])
    assert any(
        "seeded identity split 0 (no features_and_partitions.mat" in n for n in get_dataset("grid", tmp_path).notes
    )


def test_duke_folder_is_not_loaded_as_market(tmp_path: Path, make_market_tree: Callable[..., Path]) -> None:
    root = make_market_tree(tmp_path / "market1501")
    write_image(root / "bounding_box_test" / "0005_c8_f0046985.jpg")  # Duke has 8 cameras, Market 6
    with pytest.raises(ImageNameError, match="0005_c8_f0046985.jpg: camera 8 is outside market1501's cameras 1..6"):
        get_dataset("market1501", tmp_path)
    assert get_dataset("dukemtmc", root).num_train_cams == 6


@pytest.mark.parametrize(
    ("name", "folder", "file_name", "bound"),
    [
        ("cuhk03", "cuhk03np/detected", "0001_c3_1.png", "1..2"),
        ("msmt17", "msmt17", "0001_c16_0001.jpg", "1..15"),
        ("dukemtmc", "DukeMTMC-reID", "0001_c9_f01.jpg", "1..8"),
    ],
)
def test_camera_range_of_each_dataset(
    tmp_path: Path, make_market_tree: Callable[..., Path], name: str, folder: str, file_name: str, bound: str
) -> None:
    root = make_market_tree(tmp_path / folder, num_cameras=2)
    write_image(root / "query" / file_name)
    with pytest.raises(ImageNameError, match=f"{file_name}: camera .* cameras {bound}"):
        get_dataset(name, tmp_path)


def test_official_readme_folder_name_market1501(tmp_path: Path, make_market_tree: Callable[..., Path]) -> None:
    root = make_market_tree(tmp_path / "Market1501")
    assert get_dataset("ma", tmp_path).root == str(root)


def test_folder_names_match_case_insensitively(tmp_path: Path, make_market_tree: Callable[..., Path]) -> None:
    root = make_market_tree(tmp_path / "DUKEMTMC-REID")
    assert get_dataset("duke", tmp_path).root == str(root)


def test_macos_resource_fork_files_are_ignored(tmp_path: Path, make_market_tree: Callable[..., Path]) -> None:
    root = make_market_tree(tmp_path / "market1501")
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (root / folder / "._0001_c1s1_000010_00.jpg").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (root / "query" / "._strange.jpg").write_bytes(b"")
    dataset = get_dataset("ma", tmp_path)
    assert len(dataset.query) == 2 and all("._" not in r.path for r in dataset.train + dataset.query + dataset.gallery)
    custom = get_dataset(str(root), "")
    assert len(custom.query) == 2


def test_msmt17_list_naming_a_missing_image_on_a_later_line(tmp_path: Path) -> None:
    root = _msmt_list_tree(tmp_path / "MSMT17_V1")
    lines = (root / "list_gallery.txt").read_text() + "0001/0001_009_01_0113noon_0009_0.jpg 1\n"
    (root / "list_gallery.txt").write_text(lines)
    with pytest.raises(DatasetLayoutError, match=r"list_gallery.txt, line 3 lists .*0001_009_01_0113noon_0009_0.jpg"):
        get_dataset("ms", root)


@pytest.mark.parametrize("split", ["train", "val"])
def test_empty_msmt17_list_is_an_error(tmp_path: Path, split: str) -> None:
    root = _msmt_list_tree(tmp_path / "MSMT17_V1")
    (root / f"list_{split}.txt").write_text("\n")
    with pytest.raises(EmptySplitError, match=f"list_{split}.txt lists no images"):
        get_dataset("ms", root)
