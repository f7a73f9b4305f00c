"""A list naming a file twice: repeated rows are dropped and counted by every loader and reported by
``dcac data check``; a file under two identities is refused naming it. CSV lists: any encoding's bytes
reach the file system as they are, and an out-of-range id names its line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import write_image

from dcac.cli import main
from dcac.data import get_dataset
from dcac.data.errors import DatasetLayoutError, DuplicateListingError, ImageNameError


def _write_csv(path: Path, rows: list[str]) -> Path:
    for row in rows:
        write_image(path.parent / row.split(",")[0].replace("./", ""))
    path.write_text("\n".join(rows) + "\n")
    return path


ROWS = ["a.jpg,1,0,train", "b.jpg,1,1,train", "c.jpg,2,0,train", "q1.jpg,7,0,query", "g1.jpg,7,1,gallery"]


def test_repeated_rows_are_dropped_counted_and_reported(tmp_path: Path, capsys) -> None:
    rows = [*ROWS, "q1.jpg,7,0,query", "./q1.jpg,7,0,query", "a.jpg,1,0,train"]
    path = _write_csv(tmp_path / "shop" / "list.csv", rows)
    dataset = get_dataset(str(path), "")
    assert len(dataset.query) == 1 and len(dataset.train) == 3 and dataset.repeated_rows == 3
    assert any(note.startswith("dropped 3 repeated list rows") and "a.jpg" in note for note in dataset.notes)
    assert main(["data", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "repeated list rows: 3" in out and "problem: 3 list rows repeat a file already listed" in out


def test_a_file_under_two_identities_is_refused(tmp_path: Path, capsys) -> None:
    path = _write_csv(tmp_path / "shop" / "list.csv", [*ROWS, "g1.jpg,8,1,gallery"])
    with pytest.raises(DuplicateListingError, match=r"g1.jpg is listed as pid 7, .*gallery and as pid 8"):
        get_dataset(str(path), "")
    assert main(["data", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "g1.jpg is listed as pid 7" in err


def test_query_and_gallery_may_share_a_file_when_the_identity_agrees(tmp_path: Path) -> None:
    # data check reports it ("shared by query and gallery"); it is a choice, not a broken list.
    dataset = get_dataset(str(_write_csv(tmp_path / "shop" / "list.csv", [*ROWS, "q1.jpg,7,1,gallery"])), "")
    assert len(dataset.gallery) == 2 and dataset.repeated_rows == 0


def test_a_repeated_line_in_a_public_dataset_list_is_dropped(tmp_path: Path) -> None:
    root = tmp_path / "MSMT17_V1"
    train = ["0000/0000_000_01_0303morning_0015_0.jpg 0", "0000/0000_000_02_0303morning_0016_0.jpg 0"]
    for line in train:
        write_image(root / "train" / line.split()[0])
    (root / "list_train.txt").write_text(f"{train[0]}\n{train[0]}\n")  # the first image twice
    (root / "list_val.txt").write_text(f"{train[1]}\n")
    for split, name in (
        ("query", "0000_000_04_0113morning_0001_0.jpg"),
        ("gallery", "0000_001_06_0113noon_0001_0.jpg"),
    ):
        write_image(root / "test" / "0000" / name)
        (root / f"list_{split}.txt").write_text(f"0000/{name} 0\n")
    dataset = get_dataset("msmt17", tmp_path)
    assert len(dataset.train) == 2 and dataset.repeated_rows == 1


def test_a_latin_1_list_reaches_latin_1_file_names_and_names_the_file_otherwise(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    write_image(Path(os.fsdecode(bytes(folder) + b"/caf\xe9.jpg")))
    write_image(folder / "b.jpg")
    path = folder / "list.csv"
    path.write_bytes("café.jpg,1,0\nb.jpg,2,0\n".encode("latin-1"))
    assert len(get_dataset(str(path), "").train) == 2
    path.write_bytes("b.jpg,2,0\nnaïve.jpg,1,0\n".encode("latin-1"))
    with pytest.raises(DatasetLayoutError, match=rf"{path}, line 2: image .*na\\xefve.jpg does not exist.*not UTF-8"):
        get_dataset(str(path), "")


@pytest.mark.parametrize("row", ["a.jpg,100000000000000000000000,0", "a.jpg,1,100000000000000000000000"])
def test_an_id_too_large_names_its_line(tmp_path: Path, row: str) -> None:
    path = _write_csv(tmp_path / "shop" / "list.csv", ["b.jpg,1,0", row])
    with pytest.raises(ImageNameError, match=rf"{path}, line 2: .* 100000000000000000000000 is out of range"):
        get_dataset(str(path), "")
