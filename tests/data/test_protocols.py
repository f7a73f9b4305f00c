"""Setting strings, merged training sets with per-source id/camera offsets, and target loading."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import write_images

from dcac.data import build_protocol, get_dataset, parse_setting
from dcac.data.protocols import (
    CLASSIC_MULTI_SOURCE_SETTING,
    LEAVE_ONE_OUT_SETTINGS,
    RELEASED_SINGLE_SOURCE_SETTINGS,
    merge_sources,
)


def test_parse_setting() -> None:
    assert parse_setting("ma_to_ms") == (["market1501"], ["msmt17"])
    assert parse_setting("ma+d+c3_to_ms") == (["market1501", "dukemtmc", "cuhk03"], ["msmt17"])
    assert parse_setting("synth_a+synth_b_to_synth_c") == (["synth_a", "synth_b"], ["synth_c"])
    for bad in ("ma", "ma_to_", "_to_ms", "ma_to_ms_to_d", "ma+ma_to_d", "ma_to_xyz"):
        with pytest.raises(ValueError):
            parse_setting(bad)


def test_setting_constants() -> None:
    main = {"market1501", "dukemtmc", "msmt17", "cuhk03"}
    for setting in LEAVE_ONE_OUT_SETTINGS:
        sources, targets = parse_setting(setting)
        assert len(sources) == 3 and len(targets) == 1 and set(sources) | set(targets) == main
    assert {parse_setting(s)[1][0] for s in LEAVE_ONE_OUT_SETTINGS} == main
    assert parse_setting(CLASSIC_MULTI_SOURCE_SETTING) == (
        ["market1501", "dukemtmc", "cuhk02", "cuhk03", "cuhksysu"],
        ["prid", "grid", "viper", "ilids"],
    )
    assert [parse_setting(s) for s in RELEASED_SINGLE_SOURCE_SETTINGS][0] == (["market1501"], ["msmt17"])


@pytest.fixture
def data_root(tmp_path: Path, make_market_tree: Callable[..., Path]) -> Path:
    make_market_tree(tmp_path / "market1501")  # 3 train ids, cams up to 6; test ids {1, 3}
    duke = tmp_path / "DukeMTMC-reID"
    write_images(duke / "bounding_box_train", ["0010_c1_f01.jpg", "0011_c8_f02.jpg", "0010_c2_f03.jpg"])
    write_images(duke / "query", ["0020_c1_f04.jpg"])
    write_images(duke / "bounding_box_test", ["0020_c3_f05.jpg", "0021_c2_f06.jpg"])
    write_images(tmp_path / "cuhksysu" / "cropped_images", ["p1_s1_1.jpg", "p2_s1_1.jpg"])
    return tmp_path


def test_two_sources_get_disjoint_ids_and_cameras(data_root: Path) -> None:
    protocol = build_protocol(["ma", "d"], ["duke"], data_root)
    train = protocol.train
    assert train.sources == ("market1501", "dukemtmc")
    assert (train.num_ids, train.num_cams) == (3 + 2, 6 + 8)
    assert train.id_offsets == {"market1501": 0, "dukemtmc": 3} and train.cam_offsets == {
        "market1501": 0,
        "dukemtmc": 6,
    }
    market, duke = get_dataset("ma", data_root), get_dataset("d", data_root)
    expected = {(r.path, r.pid, r.camid) for r in market.train} | {(r.path, r.pid + 3, r.camid + 6) for r in duke.train}
    assert {(r.path, r.pid, r.camid) for r in train.records} == expected
    assert sorted(set(train.pids)) == list(range(5))
    assert list(protocol.targets) == ["dukemtmc"] and protocol.targets["dukemtmc"].query[0].pid == 20


def test_all_splits_adds_query_and_gallery_ids(data_root: Path) -> None:
    train = build_protocol(["ma", "d"], ["ma"], data_root, all_splits=True).train
    # Market: 3 train ids + test ids {1, 3} (distractor 0 and junk excluded); Duke: 2 + {20, 21}
    assert train.num_ids == 5 + 4 and sorted(set(train.pids)) == list(range(9))
    assert len(train.records) == 4 + 2 + 2 + 3 + 1 + 2
    market_test_paths = {r.path for r in get_dataset("ma", data_root).query}
    market_test_labels = {r.pid for r in train.records if r.path in market_test_paths}
    assert market_test_labels == {3, 4}  # after the 3 train labels, sorted test ids 1 -> 3, 3 -> 4
    assert not any("0000_c3s1" in r.path for r in train.records)
    assert train.id_offsets["dukemtmc"] == 5


def test_merge_single_source_equals_dataset_train(data_root: Path) -> None:
    market = get_dataset("ma", data_root)
    train = merge_sources([market])
    assert train.records == market.train and train.num_ids == market.num_train_pids


def test_dataset_options_and_errors(data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_protocol(["cs"], ["ma"], data_root, verbose=True)
    assert "Training on cuhksysu" in capsys.readouterr().out
    with pytest.raises(ValueError, match="training-only"):
        build_protocol(["ma"], ["cs"], data_root)
    with pytest.raises(ValueError, match="unknown option"):
        build_protocol(["ma"], ["d"], data_root, dataset_options={"market": {"variant": "labeled"}})
    with pytest.raises(ValueError, match="at least one"):
        build_protocol([], ["d"], data_root)
