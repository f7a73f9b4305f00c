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
import io
from pathlib import Path

from dcac.data.datasets.custom_rules import SPLITS, BadInput, RawRecord
from dcac.data.errors import DatasetLayoutError, ImageNameError

LAYOUT = """<list>.csv, one image a row (header optional):
    path,pid,camid[,split]     path relative to the list file; pid integer; camid integer or empty;
                               split train|query|gallery (default train)"""
LIST_SUFFIXES = (".csv", ".txt")
_MAX_ID = 2**63 - 1


def _parse_row(row: list[str], base: Path, where: str) -> RawRecord:
    if len(row) not in (3, 4):
        raise ImageNameError(f"cannot parse {where}: expected 'path,pid,camid[,split]', got {','.join(row)!r}")
    path, pid, camid, *rest = (field.strip() for field in row)
    if not pid.lstrip("-").isdigit():
        raise ImageNameError(f"{where}: pid {pid!r} is not an integer")
    if camid and not camid.isdigit():
        raise ImageNameError(f"{where}: camid {camid!r} is not a non-negative integer (or empty for no camera)")
    for name, value in (("pid", pid), ("camid", camid)):
        if value and abs(int(value)) > _MAX_ID:  # ids become int64 tensors: a larger one cannot be evaluated
            raise ImageNameError(f"{where}: {name} {value} is too large (at most {_MAX_ID})")
    split = rest[0] if rest and rest[0] else "train"
    if split not in SPLITS:
        raise ImageNameError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
    image = Path(path) if Path(path).is_absolute() else base / path
    if not image.is_file():
        raise DatasetLayoutError(f"{where}: image {image} does not exist")
    return RawRecord(str(image), str(int(pid)), camid or None, split)


def _is_header(row: list[str]) -> bool:
    return len(row) >= 2 and row[0].strip().lower() == "path" and row[1].strip().lower() == "pid"


def read_csv_list(list_path: Path, bad: BadInput) -> list[RawRecord]:
    """Raw records of every row; a bad row raises naming the file and line (or is skipped and counted)."""
    records = []
    data = list_path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # -sig: a spreadsheet's byte-order mark is no part of the header
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ImageNameError(
            f"{list_path}, line {line}: not UTF-8 text ({err.reason} at byte {err.start}); save the list as UTF-8"
        ) from None
    with io.StringIO(text, newline="") as handle:
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
