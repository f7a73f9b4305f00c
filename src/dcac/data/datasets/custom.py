"""A user's own dataset, given by its path instead of a name: the layout is detected (or named) and printed.

Three layouts are read (``layout=`` names one explicitly, ``"auto"`` detects it):

- ``market``: the Market-1501 layout (``bounding_box_train/``, ``query/``, ``bounding_box_test/`` with
  ``PPPP_cC*.jpg`` names) under any folder name; pid 0 is a distractor, as in Market-1501;
- ``folders``: one folder per identity (``train|query|gallery/<identity>/[<camera>/]<image>``);
- ``csv``: a list file with rows ``path,pid,camid[,split]``.

A dataset without a train split is evaluation-only (a target), one without query and gallery is
training-only (a source). The dataset is named after its folder (or list file), and its path is its own
root, so several of them, in different places, can be combined as sources.
"""

from __future__ import annotations

from pathlib import Path

from dcac.data.datasets import csv_list, identity_folders
from dcac.data.datasets.custom_rules import BadInput, RawRecord, build_custom_dataset
from dcac.data.datasets.market_layout import MARKET_LAYOUT, SPLIT_FOLDERS, images_in, parse_market_name
from dcac.data.errors import DatasetLayoutError, EmptySplitError, ImageNameError
from dcac.data.records import ReIDDataset

LAYOUTS = ("auto", "market", "folders", "csv")
LAYOUT_HELP = f"market:\n{MARKET_LAYOUT}\nfolders:\n{identity_folders.LAYOUT}\ncsv:\n{csv_list.LAYOUT}"


def looks_like_path(name: str) -> bool:
    """Whether a dataset reference is a path (a separator, ``.``/``~`` start, or an existing file/folder)."""
    return "/" in name or "\\" in name or name.startswith((".", "~")) or Path(name).exists()


def custom_name(path: Path) -> str:
    """The dataset's name: its folder name, or the list file's name without suffix."""
    return path.stem if path.is_file() else path.name


def detect_layout(path: Path) -> str:
    if path.is_file():
        if path.suffix.lower() in csv_list.LIST_SUFFIXES:
            return "csv"
        raise DatasetLayoutError(f"{path}: a list file must end in .csv or .txt; layouts:\n{LAYOUT_HELP}")
    if not path.is_dir():
        raise DatasetLayoutError(f"dataset path not found: {path}")
    # query/ is shared by both folder layouts; the bounding_box_* folders are Market's own.
    if (path / SPLIT_FOLDERS["train"]).is_dir() or (path / SPLIT_FOLDERS["gallery"]).is_dir():
        return "market"
    if identity_folders.is_identity_folders_dir(path):
        return "folders"
    from dcac.data.person_folders_split import looks_like_person_folders  # it imports this package

    if looks_like_person_folders(path):
        raise DatasetLayoutError(
            f"{path}: one folder per person but no query/gallery split; `dcac data split {path} --out "
            f"{path.name}.csv` writes a query/gallery list of it (then use the .csv)"
        )
    raise DatasetLayoutError(
        f"{path}: no known layout (looked for bounding_box_train/, query/, "
        f"bounding_box_test/, train/, gallery/); layouts:\n{LAYOUT_HELP}"
    )


def _scan_market(dataset_dir: Path, bad: BadInput) -> list[RawRecord]:
    records = []
    for split, folder in SPLIT_FOLDERS.items():
        split_dir = dataset_dir / folder
        if not split_dir.is_dir():
            continue
        images = images_in(split_dir)
        if not images:
            raise EmptySplitError(f"{split_dir}: the {split} split has no images; expected layout:\n{MARKET_LAYOUT}")
        for path in images:
            try:
                pid, camid = parse_market_name(path)
            except ImageNameError as error:
                bad.report(error)
                continue
            records.append(RawRecord(str(path), str(pid), str(camid), split))
    return records


def load_custom(path: str | Path, *, layout: str = "auto", on_error: str = "raise") -> ReIDDataset:
    """Load a user's dataset at ``path`` in ``layout`` (detected when ``"auto"``).

    ``on_error="skip"`` skips unparsable rows/names and missing files, and counts them in the notes;
    ``"raise"`` (default) stops at the first with an error naming the file (and line).
    """
    path = Path(path).expanduser()
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    chosen = detect_layout(path) if layout == "auto" else layout
    how = f"{chosen} (detected)" if layout == "auto" else f"{chosen} (as asked)"
    bad = BadInput(on_error)
    if chosen == "csv":
        if not path.is_file():
            raise DatasetLayoutError(f"layout csv needs a list file, but {path} is not a file")
        raw = csv_list.read_csv_list(path, bad)
    elif not path.is_dir():
        raise DatasetLayoutError(f"layout {chosen} needs a folder, but {path} is not a folder")
    else:
        raw = _scan_market(path, bad) if chosen == "market" else identity_folders.scan_identity_folders(path, bad)
    return build_custom_dataset(
        custom_name(path),
        str(path),
        raw,
        layout=how,
        notes=bad.notes(),
        distractor_pids=(0,) if chosen == "market" else (),
    )
