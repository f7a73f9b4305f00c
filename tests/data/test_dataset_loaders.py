"""Every dataset loader on a tiny tree in its real layout, plus root detection and the layout errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import write_image, write_images

from dcac.data import get_dataset
from dcac.data.datasets import REGISTRY, canonical_name, resolve_dataset_dir
from dcac.data.errors import DatasetLayoutError, EmptySplitError, ImageNameError


def pids(records) -> list[int]:
    return sorted({r.pid for r in records})


# ----------------------------------------------------------------------------------------------- Market / Duke
@pytest.mark.parametrize("name", ["market1501", "ma", "market", "MA"])
def test_market_loader(tmp_path: Path, make_market_tree: Callable[..., Path], name: str) -> None:
    root = make_market_tree(tmp_path / "Market-1501-v15.09.15")
    dataset = get_dataset(name, root)
    assert dataset.name == "market1501"
    # train ids {2, 4, 7} -> labels by sorted id; junk dropped
    by_path = {Path(r.path).name: (r.pid, r.camid) for r in dataset.train}
    assert by_path == {
        "0002_c3s1_000003_01.jpg": (0, 2),
        "0004_c6s1_000004_01.jpg": (1, 5),
        "0007_c1s1_000001_01.jpg": (2, 0),
        "0007_c2s1_000002_01.jpg": (2, 1),
    }
    assert dataset.num_train_pids == 3 and dataset.num_train_cams == 6
    assert pids(dataset.query) == [1, 3]
    assert pids(dataset.gallery) == [0, 1, 3]  # distractor 0 stays, junk -1 dropped
    assert all(r.dataset == "market1501" for r in dataset.train + dataset.query + dataset.gallery)


@pytest.mark.parametrize("folder", ["Market-1501-v15.09.15", "market1501", "Market-1501"])
def test_root_may_be_the_parent_folder(tmp_path: Path, make_market_tree: Callable[..., Path], folder: str) -> None:
    make_market_tree(tmp_path / folder)
    assert resolve_dataset_dir("ma", tmp_path) == tmp_path / folder
    assert get_dataset("market1501", tmp_path).root == str(tmp_path / folder)


def test_duke_loader(tmp_path: Path, make_market_tree: Callable[..., Path]) -> None:
    root = make_market_tree(tmp_path / "DukeMTMC-reID")
    dataset = get_dataset("d", tmp_path)
    assert dataset.name == "dukemtmc" and dataset.root == str(root)
    assert dataset.num_train_pids == 3 and pids(dataset.query) == [1, 3]


def test_verbose_prints_summary(
    tmp_path: Path, make_market_tree: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    make_market_tree(tmp_path / "market1501")
    get_dataset("ma", tmp_path, verbose=True)
    out = capsys.readouterr().out
    assert "market1501" in out and "gallery" in out


# --------------------------------------------------------------------------------------------------- errors
def test_missing_dataset_folder_names_path_and_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError) as info:
        get_dataset("market1501", tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "bounding_box_train" in message and "Market-1501-v15.09.15" in message


def test_missing_root_is_a_layout_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="nowhere"):
        get_dataset("duke", tmp_path / "nowhere")


def test_missing_split_folder_is_named(tmp_path: Path, make_market_tree: Callable[..., Path]) -> None:
    root = make_market_tree(tmp_path / "market1501")
    for image in (root / "query").iterdir():
        image.unlink()
    (root / "query").rmdir()
    with pytest.raises(DatasetLayoutError) as info:
        get_dataset("ma", root)
    assert str(root / "query") in str(info.value) and "bounding_box_test" in str(info.value)


def test_unparsable_file_name_is_named(tmp_path: Path, make_market_tree: Callable[..., Path]) -> None:
    root = make_market_tree(tmp_path / "market1501")
    bad = write_image(root / "query" / "person1.jpg")
    with pytest.raises(ImageNameError, match=str(bad)):
        get_dataset("ma", root)


def test_empty_query_raises(tmp_path: Path, make_market_tree: Callable[..., Path]) -> None:
    root = make_market_tree(tmp_path / "market1501")
    for image in (root / "query").iterdir():
        image.unlink()
    with pytest.raises(EmptySplitError, match="query"):
        get_dataset("ma", root)


def test_empty_gallery_raises(tmp_path: Path, make_market_tree: Callable[..., Path]) -> None:
    root = make_market_tree(tmp_path / "market1501")
    for image in (root / "bounding_box_test").iterdir():
        image.unlink()
    with pytest.raises(EmptySplitError, match="gallery"):
        get_dataset("ma", root)


def test_unknown_dataset_and_unknown_option(tmp_path: Path, make_market_tree: Callable[..., Path]) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*market1501"):
        get_dataset("nope", tmp_path)
    make_market_tree(tmp_path / "market1501")
    with pytest.raises(ValueError, match="unknown option.*'split'"):
        get_dataset("ma", tmp_path, split=1)


def test_registry_short_names() -> None:
    expected = {
        "ma": "market1501",
        "market": "market1501",
        "d": "dukemtmc",
        "duke": "dukemtmc",
        "ms": "msmt17",
        "c3": "cuhk03",
        "c2": "cuhk02",
        "cs": "cuhksysu",
        "grid": "grid",
        "ilids": "ilids",
        "prid": "prid",
        "viper": "viper",
        "synth_a": "synth_a",
        "synth_b": "synth_b",
        "synth_c": "synth_c",
        "synth_ms": "synth_ms",
    }
    assert {short: canonical_name(short) for short in expected} == expected
    assert set(REGISTRY) == set(expected.values())


# --------------------------------------------------------------------------------------------------- MSMT17
def _msmt_list_tree(dataset_dir: Path, train_folder: str = "train", test_folder: str = "test") -> Path:
    lines = {
        "train": [
            ("0000/0000_000_01_0303morning_0015_0.jpg", 0),
            ("0000/0000_001_03_0303morning_0016_0.jpg", 0),
            ("0001/0001_000_15_0303noon_0100_1.jpg", 1),
        ],
        "val": [("0001/0001_005_02_0303noon_0110_0.jpg", 1), ("0002/0002_000_07_0303noon_0120_0.jpg", 2)],
        "query": [("0000/0000_000_04_0113morning_0001_0.jpg", 0), ("0001/0001_000_05_0113morning_0002_0.jpg", 1)],
        "gallery": [("0000/0000_001_06_0113noon_0001_0.jpg", 0), ("0001/0001_001_01_0113noon_0002_0.jpg", 1)],
    }
    for split, entries in lines.items():
        folder = train_folder if split in ("train", "val") else test_folder
        for relative, _ in entries:
            write_image(dataset_dir / folder / relative)
        (dataset_dir / f"list_{split}.txt").write_text("".join(f"{rel} {label}\n" for rel, label in entries))
    return dataset_dir


@pytest.mark.parametrize("folders", [("MSMT17_V1", "train", "test"), ("MSMT17_V2", "mask_train_v2", "mask_test_v2")])
def test_msmt17_list_layouts_and_use_val(tmp_path: Path, folders: tuple[str, str, str]) -> None:
    top, train_folder, test_folder = folders
    root = _msmt_list_tree(tmp_path / top, train_folder, test_folder)
    with_val = get_dataset("ms", tmp_path)
    assert with_val.root == str(root)
    assert len(with_val.train) == 5 and with_val.num_train_pids == 3
    cams = {Path(r.path).name: r.camid for r in with_val.train}
    assert cams["0001_000_15_0303noon_0100_1.jpg"] == 14 and cams["0000_000_01_0303morning_0015_0.jpg"] == 0
    assert all(Path(r.path).is_file() for r in with_val.train + with_val.query + with_val.gallery)
    without_val = get_dataset("msmt17", root, use_val=False)
    assert len(without_val.train) == 3 and without_val.num_train_pids == 2
    assert pids(without_val.query) == [0, 1] and len(without_val.gallery) == 2


def test_msmt17_market_style_repackaging(tmp_path: Path) -> None:
    root = tmp_path / "msmt17"
    write_images(root / "bounding_box_train", ["0000_c1_0000.jpg", "0000_c15_0001.jpg", "0005_c3_0002.jpg"])
    write_images(root / "query", ["0000_c2_0000.jpg"])
    write_images(root / "bounding_box_test", ["0000_c4_0001.jpg"])
    dataset = get_dataset("ms", tmp_path)
    assert dataset.num_train_pids == 2 and dataset.num_train_cams == 15
    with pytest.raises(ValueError, match="use_val=False"):
        get_dataset("ms", tmp_path, use_val=False)


def test_msmt17_missing_list_file_is_named(tmp_path: Path) -> None:
    root = _msmt_list_tree(tmp_path / "MSMT17_V1")
    (root / "list_val.txt").unlink()
    with pytest.raises(DatasetLayoutError) as info:
        get_dataset("ms", root)
    assert str(root / "list_val.txt") in str(info.value) and "list_query.txt" in str(info.value)


def test_msmt17_bad_list_line_is_named(tmp_path: Path) -> None:
    root = _msmt_list_tree(tmp_path / "MSMT17_V1")
    (root / "list_query.txt").write_text("0000/0000_000_04_0113morning_0001_0.jpg 0\nbroken-line\n")
    with pytest.raises(ImageNameError, match=r"list_query.txt, line 2"):
        get_dataset("ms", root)


def test_msmt17_bad_camera_field_is_named(tmp_path: Path) -> None:
    root = _msmt_list_tree(tmp_path / "MSMT17_V1")
    (root / "list_gallery.txt").write_text("0000/0000_001_99_0113noon_0001_0.jpg 0\n")
    with pytest.raises(ImageNameError, match="0000_001_99"):
        get_dataset("ms", root)


def test_msmt17_lists_that_do_not_match_the_images(tmp_path: Path) -> None:
    root = _msmt_list_tree(tmp_path / "MSMT17_V1")
    (root / "list_train.txt").write_text("0099/0099_000_01_0303morning_0015_0.jpg 99\n")
    with pytest.raises(DatasetLayoutError, match="list_train.txt, line 1 lists .* which does not exist"):
        get_dataset("ms", root)


# --------------------------------------------------------------------------------------------------- CUHK03
@pytest.mark.parametrize("variant", ["detected", "labeled"])
def test_cuhk03_np_variants(tmp_path: Path, make_market_tree: Callable[..., Path], variant: str) -> None:
    make_market_tree(tmp_path / "cuhk03np" / variant, suffix=".png", num_cameras=2)
    dataset = get_dataset("c3", tmp_path, variant=variant)
    assert dataset.root == str(tmp_path / "cuhk03np" / variant)
    assert all(r.path.endswith(".png") for r in dataset.train) and dataset.num_train_pids == 3


def test_cuhk03_defaults_to_detected_and_names_missing_variant(
    tmp_path: Path, make_market_tree: Callable[..., Path]
) -> None:
    make_market_tree(tmp_path / "cuhk03np" / "labeled", suffix=".png")
    with pytest.raises(DatasetLayoutError, match="detected"):
        get_dataset("cuhk03", tmp_path)
    with pytest.raises(ValueError, match="variant"):
        get_dataset("cuhk03", tmp_path, variant="both")


# ------------------------------------------------------------------------------------ training-only sets
@pytest.mark.parametrize("with_dataset_level", [True, False])
def test_cuhk02_all_pairs_in_train(tmp_path: Path, with_dataset_level: bool) -> None:
    pairs_dir = tmp_path / "cuhk02" / ("Dataset" if with_dataset_level else "")
    for pair in ("P1", "P2", "P3", "P4", "P5"):
        write_images(pairs_dir / pair / "cam1", ["001_1.png", "002_1.png"])
        write_images(pairs_dir / pair / "cam2", ["001_3.png", "002_3.png"])
    dataset = get_dataset("c2", tmp_path)
    assert dataset.train_only and not dataset.query and not dataset.gallery
    assert dataset.num_train_pids == 10  # ids restart per pair: 5 pairs x 2 ids
    assert dataset.num_train_cams == 10
    assert len(dataset.train) == 20
    by_name = {(Path(r.path).parent.parent.name, Path(r.path).name): (r.pid, r.camid) for r in dataset.train}
    assert by_name[("P1", "001_1.png")] == (0, 0) and by_name[("P3", "002_3.png")] == (5, 5)


def test_cuhk02_missing_pair_is_named(tmp_path: Path) -> None:
    write_images(tmp_path / "cuhk02" / "P1" / "cam1", ["001_1.png"])
    with pytest.raises(DatasetLayoutError, match="cam2"):
        get_dataset("c2", tmp_path)


def test_cuhksysu_torchreid_layout(tmp_path: Path) -> None:
    write_images(
        tmp_path / "cuhksysu" / "cropped_images", ["p11422_s16929_1.jpg", "p11422_s16930_2.jpg", "p5_s1_1.jpg"]
    )
    dataset = get_dataset("cs", tmp_path)
    assert dataset.train_only and dataset.num_train_pids == 2 and dataset.num_train_cams == 1
    assert {Path(r.path).name: r.pid for r in dataset.train}["p5_s1_1.jpg"] == 0


def test_cuhksysu4reid_layout_and_bad_name(tmp_path: Path) -> None:
    combine = tmp_path / "cuhksysu4reid" / "combine"
    write_images(combine, ["11422_s16929_0000001_0.jpg", "00017_s2_0000002_1.jpg"])
    assert get_dataset("cuhksysu", tmp_path).num_train_pids == 2
    bad = write_image(combine / "scene.jpg")
    with pytest.raises(ImageNameError, match=str(bad)):
        get_dataset("cuhksysu", tmp_path)


# ---------------------------------------------------------------------------------------- small test sets
def _viper_tree(root: Path, n: int = 10) -> None:
    for k in range(n):
        write_image(root / "VIPeR" / "cam_a" / f"{k * 3:03d}_45.bmp")
        write_image(root / "VIPeR" / "cam_b" / f"{k * 3:03d}_90.bmp")


def test_viper_split(tmp_path: Path) -> None:
    _viper_tree(tmp_path / "viper")
    dataset = get_dataset("viper", tmp_path)
    assert len(dataset.query) == len(dataset.gallery) == 5 and dataset.num_train_pids == 5
    assert pids(dataset.query) == pids(dataset.gallery)
    assert {r.camid for r in dataset.query} == {0} and {r.camid for r in dataset.gallery} == {1}
    assert all("cam_a" in r.path for r in dataset.query)
    held_out = set(pids(dataset.query))
    train_originals = {int(Path(r.path).name[:3]) for r in dataset.train}
    assert not held_out & train_originals and len(held_out | train_originals) == 10
    assert pids(get_dataset("viper", tmp_path, split=0).query) == pids(dataset.query)  # deterministic
    assert any(pids(get_dataset("viper", tmp_path, split=s).query) != pids(dataset.query) for s in range(1, 5))
    with pytest.raises(ValueError, match="split"):
        get_dataset("viper", tmp_path, split=-1)


def test_viper_unpaired_person_is_reported(tmp_path: Path) -> None:
    _viper_tree(tmp_path / "viper")
    write_image(tmp_path / "viper" / "VIPeR" / "cam_a" / "999_45.bmp")
    with pytest.raises(DatasetLayoutError, match="999"):
        get_dataset("viper", tmp_path)


def test_prid_split_with_distractors(tmp_path: Path) -> None:
    single_shot = tmp_path / "prid2011" / "single_shot"
    write_images(single_shot / "cam_a", [f"person_{k:04d}.png" for k in [*range(1, 11), 201, 202]])
    write_images(single_shot / "cam_b", [f"person_{k:04d}.png" for k in [*range(1, 11), 201, 202, 203]])
    dataset = get_dataset("prid", tmp_path, split=3)
    held_out = set(pids(dataset.query))
    assert len(held_out) == 5 and held_out <= set(range(1, 11))
    assert set(pids(dataset.gallery)) == held_out | {201, 202, 203}
    assert {r.camid for r in dataset.query} == {0} and {r.camid for r in dataset.gallery} == {1}
    assert len(dataset.train) == 10 and dataset.num_train_pids == 5  # both images of the 5 other shared ids


def test_grid_split_keeps_distractors_in_gallery(tmp_path: Path) -> None:
    base = tmp_path / "grid" / "underground_reid"
    write_images(base / "probe", [f"{k:04d}_{k % 8 + 1}_25004_107_32_106_221.jpeg" for k in range(1, 9)])
    write_images(
        base / "gallery",
        [f"{k:04d}_{(k + 3) % 8 + 1}_25009_1_2_3_4.jpeg" for k in range(1, 9)]
        + [f"0000_{c}_1000{c}_1_2_3_4.jpeg" for c in range(1, 4)],
    )
    dataset = get_dataset("grid", tmp_path)
    held_out = set(pids(dataset.query))
    assert len(held_out) == 4
    assert set(pids(dataset.gallery)) == held_out | {0}
    assert sum(r.pid == 0 for r in dataset.gallery) == 3
    assert len(dataset.train) == 8 and dataset.num_train_pids == 4
    assert {r.camid for r in dataset.query} <= set(range(8))


def test_grid_bad_name(tmp_path: Path) -> None:
    write_images(tmp_path / "grid" / "probe", ["0001_1_x.jpeg"])
    write_images(tmp_path / "grid" / "gallery", ["oops.jpeg"])
    with pytest.raises(ImageNameError, match="oops.jpeg"):
        get_dataset("grid", tmp_path)


def test_ilids_split(tmp_path: Path) -> None:
    persons = tmp_path / "ilids" / "i-LIDS_Pedestrian" / "Persons"
    write_images(persons, [f"{pid:04d}{k:03d}.jpg" for pid in range(1, 8) for k in range(1, 4)])
    dataset = get_dataset("ilids", tmp_path, split=2)
    assert len(dataset.query) == len(dataset.gallery) == 4  # 7 ids -> 4 held out
    assert pids(dataset.query) == pids(dataset.gallery)
    assert {r.path for r in dataset.query}.isdisjoint(r.path for r in dataset.gallery)
    assert len(dataset.train) == 9 and dataset.num_train_pids == 3
    again = get_dataset("ilids", tmp_path, split=2)
    assert [r.path for r in again.query] == [r.path for r in dataset.query]
