"""Registry of the supported datasets and :func:`get_dataset`, the one entry point for loading them.

A dataset can also be given by its path (a user's own data, see ``custom``): :func:`get_dataset` and
:func:`dataset_key` accept either. Every dataset module (``market1501``, ``msmt17``, ...) documents the on-disk layout it accepts and exposes
``NAME``, ``ALIASES``, ``FOLDER_NAMES``, ``LAYOUT``, ``is_dataset_dir(path)`` and
``load(dataset_dir, **options)``. The synthetic domains written by :func:`dcac.demo.synthetic.write_synthetic`
are registered here too and read through the same Market-1501 / MSMT17 loaders as the real data.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from dcac.data.datasets import (
    cuhk02,
    cuhk03,
    cuhksysu,
    custom,
    dukemtmc,
    grid,
    ilids,
    market1501,
    msmt17,
    prid,
    viper,
)
from dcac.data.datasets.market_layout import MARKET_LAYOUT, is_market_dir, load_market_style
from dcac.data.errors import DatasetLayoutError
from dcac.data.records import ReIDDataset

SYNTHETIC_MARKET_DOMAINS = ("synth_a", "synth_b", "synth_c")
SYNTHETIC_MSMT_DOMAINS = ("synth_ms",)


@dataclass(frozen=True)
class DatasetSpec:
    """How to find and load one dataset."""

    name: str
    aliases: tuple[str, ...]
    folder_names: tuple[str, ...]
    layout: str
    is_dataset_dir: Callable[[Path], bool]
    load: Callable[..., ReIDDataset]

    @property
    def options(self) -> tuple[str, ...]:
        """Names of the keyword options ``load`` accepts (everything after the folder argument)."""
        return tuple(inspect.signature(self.load).parameters)[1:]


def _from_module(module: ModuleType) -> DatasetSpec:
    return DatasetSpec(
        module.NAME,
        tuple(module.ALIASES),
        tuple(module.FOLDER_NAMES),
        module.LAYOUT,
        module.is_dataset_dir,
        module.load,
    )


def _market_domain(name: str) -> DatasetSpec:
    def load(dataset_dir: Path) -> ReIDDataset:
        return load_market_style(dataset_dir, name=name, distractor_pids=(0,))

    return DatasetSpec(name, (), (name,), MARKET_LAYOUT, is_market_dir, load)


def _msmt_domain(name: str) -> DatasetSpec:
    def load(dataset_dir: Path, use_val: bool = True) -> ReIDDataset:
        return msmt17.load_msmt_style(dataset_dir, name=name, use_val=use_val)

    return DatasetSpec(name, (), (name,), msmt17.LAYOUT, msmt17.is_dataset_dir, load)


REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        *(_from_module(m) for m in (market1501, dukemtmc, msmt17, cuhk03, cuhk02, cuhksysu, grid, ilids, prid, viper)),
        *(_market_domain(name) for name in SYNTHETIC_MARKET_DOMAINS),
        *(_msmt_domain(name) for name in SYNTHETIC_MSMT_DOMAINS),
    )
}
_CANONICAL = {key.lower(): spec.name for spec in REGISTRY.values() for key in (spec.name, *spec.aliases)}


def canonical_name(name: str) -> str:
    """The registry name for a dataset name or short name (case-insensitive): ``"ma"`` -> ``"market1501"``."""
    try:
        return _CANONICAL[name.lower()]
    except KeyError:
        known = ", ".join(f"{s.name} ({'|'.join(s.aliases)})" if s.aliases else s.name for s in REGISTRY.values())
        raise ValueError(
            f"unknown dataset {name!r}; known datasets: {known}; or give the path of your own "
            "dataset folder or CSV list"
        ) from None


def is_custom(name: str | Path) -> bool:
    """Whether ``name`` refers to a user's dataset by path rather than to a registered dataset."""
    return str(name).lower() not in _CANONICAL and custom.looks_like_path(str(name))


def dataset_key(name: str | Path) -> str:
    """The registry name of a registered dataset, or the path (as given) of a user's dataset."""
    return str(name) if is_custom(name) else canonical_name(str(name))


def resolve_dataset_dir(name: str, root: str | Path) -> Path:
    """The dataset folder: ``root`` itself if it holds the dataset, else ``root/<usual folder name>``."""
    spec = REGISTRY[canonical_name(name)]
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetLayoutError(f"{spec.name}: data root not found: {root}\nexpected layout:\n{spec.layout}")
    if spec.is_dataset_dir(root):
        return root
    # Match the usual folder names case-insensitively: the official DCAC README's data/Market1501/ must be
    # found on case-sensitive file systems too.
    by_lower = {p.name.lower(): p for p in sorted(root.iterdir()) if p.is_dir()}
    candidates = list(dict.fromkeys(by_lower.get(folder.lower(), root / folder) for folder in spec.folder_names))
    for candidate in candidates:
        if candidate.is_dir() and spec.is_dataset_dir(candidate):
            return candidate
    present = [str(c) for c in candidates if c.is_dir()]
    found = (
        f"found {', '.join(present)}, but not in the expected layout"
        if present
        else f"looked in {root} and in {root}/{{{','.join(spec.folder_names)}}}"
    )
    raise DatasetLayoutError(
        f"{spec.name}: dataset folder not found under {root} ({found})\nexpected layout:\n{spec.layout}"
    )


def get_dataset(name: str, root: str | Path, *, verbose: bool = False, **options: object) -> ReIDDataset:
    """Load dataset ``name`` (full or short name) from ``root`` (its folder, or the folder holding it).

    ``options`` are the dataset's own switches, e.g. ``use_val`` (msmt17), ``variant`` (cuhk03), ``split``
    (grid, ilids, prid, viper). ``name`` may be the path of a user's dataset (then ``root`` is not used and
    the options are ``layout`` and ``on_error``, see :func:`dcac.data.datasets.custom.load_custom`).
    ``verbose=True`` prints the statistics table.
    """
    if is_custom(name):
        unknown = sorted(set(options) - {"layout", "on_error"})
        if unknown:
            raise ValueError(
                f"dataset {name}: unknown option(s) {unknown}; a dataset given by path accepts: ['layout', 'on_error']"
            )
        dataset = custom.load_custom(name, **options)  # type: ignore[arg-type]
        if verbose:
            print(dataset.summary())
        return dataset
    spec = REGISTRY[canonical_name(name)]
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(
            f"dataset {spec.name} got unknown option(s) {unknown}; it accepts: {list(spec.options) or 'none'}"
        )
    dataset = spec.load(resolve_dataset_dir(spec.name, root), **options)
    if verbose:
        print(dataset.summary())
    return dataset


__all__ = [
    "REGISTRY",
    "DatasetSpec",
    "canonical_name",
    "dataset_key",
    "get_dataset",
    "is_custom",
    "resolve_dataset_dir",
]
