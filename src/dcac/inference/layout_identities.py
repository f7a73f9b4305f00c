"""Identities a search page can colour by, taken from the dataset layout the images come from.

Besides Market-style file names (``ranked_list``), two of ``dcac``'s own-data layouts carry identities:

- a CSV list (``path,pid,camid,split``): ``dcac search LIST.csv --gallery LIST.csv`` searches its query rows
  against its gallery rows, with the list's identities;
- a folder per identity (``<dataset>/{query,gallery,train}/<identity>/[<camera>/]<image>``): any image inside
  such a dataset gets the identity (and camera) its loader gives it, whether it is searched as a folder or
  read from an ``extract`` file.

Identities are the dataset loader's own (integer folder names kept, other names numbered in sorted order over
all splits), so query and gallery images of one dataset agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from dcac.data.datasets.csv_list import LIST_SUFFIXES
from dcac.data.datasets.custom_rules import NO_CAMERA_RULE, SPLITS
from dcac.data.errors import DatasetLayoutError, ImageNameError
from dcac.data.records import ReIDDataset

#: path (resolved) → (pid, 1-based camera or None when the dataset has no cameras)
Identities = dict[str, tuple[int, int | None]]


def is_list_file(path: str | Path) -> bool:
    return Path(path).is_file() and Path(path).suffix.lower() in LIST_SUFFIXES


def _load(root: Path, layout: str) -> ReIDDataset:
    from dcac.data.datasets.custom import load_custom

    return load_custom(root, layout=layout)


def list_split(list_file: str | Path, split: str) -> list[Path]:
    """The image paths of one split of a CSV list, in list order; an empty split is an error naming the list."""
    records = getattr(_load(Path(list_file), "csv"), split)
    if not records:
        raise ValueError(f"{list_file} has no {split} rows (path,pid,camid,{split}); see `dcac data split`")
    return [Path(r.path) for r in records]


def search_inputs(arguments: Sequence[str | Path], split: str) -> list:
    """Query (or gallery) inputs: a CSV list becomes its ``split`` rows; anything else as ``expand_inputs``."""
    from dcac.inference.image_inputs import expand_inputs

    inputs: list = []
    for argument in arguments:
        inputs += list_split(argument, split) if is_list_file(argument) else expand_inputs(Path(argument))
    return inputs


def _identity_folders_root(path: Path) -> Path | None:
    """The folder-per-identity dataset holding ``path`` (``<root>/<split>/<identity>/[<camera>/]<image>``)."""
    from dcac.data.datasets.custom import detect_layout

    for split_dir in path.parents[1:3]:
        if split_dir.name in SPLITS:
            try:
                return split_dir.parent if detect_layout(split_dir.parent) == "folders" else None
            except DatasetLayoutError:
                return None
    return None


def _identities_of(dataset: ReIDDataset) -> Identities:
    cameras = NO_CAMERA_RULE not in dataset.notes
    return {
        str(Path(r.path).resolve()): (r.pid, r.camid + 1 if cameras else None)
        for r in dataset.query + dataset.gallery + dataset.train
    }


def layout_identities(paths: Iterable[str | Path], lists: Iterable[str | Path] = ()) -> Identities:
    """Identities of ``paths`` from the given CSV ``lists`` and from the folder-per-identity datasets they lie in.

    Paths outside any such dataset are left out (the caller falls back to Market-style names).
    """
    identities: Identities = {}
    for list_file in lists:
        identities.update(_identities_of(_load(Path(list_file), "csv")))
    resolved = [Path(p).resolve() for p in paths]
    roots = {root for p in resolved if str(p) not in identities and (root := _identity_folders_root(p))}
    for root in sorted(roots):
        try:
            identities.update(_identities_of(_load(root, "folders")))
        except (DatasetLayoutError, ImageNameError):
            continue  # a dataset its loader refuses gives no identities; `dcac data check` says why
    return identities
