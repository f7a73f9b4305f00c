"""A user's dataset described by a CSV list: one image a row, ``path,pid,camid[,split]``.

::

    path,pid,camid,split          (header optional)
    images/0001_a.jpg,1,3,train
    images/0002_a.jpg,2,,query    (empty camid: no camera; then every row's camid must be empty)

``path`` is relative to the list file's folder (or absolute); ``pid`` an integer (``-1`` = junk);
``camid`` a 0-based camera id, or empty; ``split`` one of train, query, gallery (default train). A row without
query/gallery rows makes a training-only source; a list without train rows an evaluation-only target.
Every listed file is checked at load time (one ``stat`` a row).
"""

from __future__ import annotations

import csv
from pathlib import Path

from dcac.data.datasets.custom_rules import SPLITS, BadInput, RawRecord
from dcac.data.errors import DatasetLayoutError, ImageNameError
from dcac.data.file_names import has_undecodable_bytes, printable

LAYOUT = """<list>.csv, one image a row (header optional):
    path,pid,camid[,split]     path relative to the list file; pid integer; camid integer or empty;
                               split train|query|gallery (default train)"""
LIST_SUFFIXES = (".csv", ".txt")
MAX_ID = 2**63 - 1


def _parse_row(row: list[str], base: Path, where: str) -> RawRecord:
    if len(row) not in (3, 4):
        raise ImageNameError(f"cannot parse {where}: expected 'path,pid,camid[,split]', got {','.join(row)!r}")
    path, pid, camid, *rest = (field.strip() for field in row)
    if not pid.lstrip("-").isdigit():
        raise ImageNameError(f"{where}: pid {pid!r} is not an integer")
    if camid and not camid.isdigit():
        raise ImageNameError(f"{where}: camid {camid!r} is not a non-negative integer (or empty for no camera)")
    for field, value in (("pid", pid), ("camid", camid)):
        if value and abs(int(value)) > MAX_ID:  # ids become int64 tensors
            raise ImageNameError(f"{where}: {field} {value} is out of range (at most {MAX_ID})")
    split = rest[0] if rest and rest[0] else "train"
    if split not in SPLITS:
        raise ImageNameError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
    image = Path(path) if Path(path).is_absolute() else base / path
    if not image.is_file():
        hint = "; the list holds bytes that are not UTF-8: save it as UTF-8" if has_undecodable_bytes(path) else ""
        raise DatasetLayoutError(f"{where}: image {printable(str(image))} does not exist{hint}")
    return RawRecord(str(image), str(int(pid)), camid or None, split)


def _is_header(row: list[str]) -> bool:
    return len(row) >= 2 and row[0].strip().lower() == "path" and row[1].strip().lower() == "pid"


def read_csv_list(list_path: Path, bad: BadInput) -> list[RawRecord]:
    """Raw records of every row; a bad row raises naming the file and line (or is skipped and counted)."""
    records = []
    # utf-8-sig: a spreadsheet's byte-order mark is no part of the header. Bytes that are not UTF-8 pass through as they are (surrogate escapes), as a file name's bytes do: a
    # latin-1 list then finds latin-1 file names, and a missing file is named with its line.
    with list_path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.reader(handle)
        for row in reader:
            line_number = reader.line_num
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if line_number == 1 and _is_header(row):
                continue
            try:
                records.append(_parse_row(row, list_path.parent, f"{list_path}, line {line_number}"))
            except (ImageNameError, DatasetLayoutError) as error:
                bad.report(error)
    return records
