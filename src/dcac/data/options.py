"""Per-dataset loader options from the command line: ``--option KEY=VALUE`` or ``--option DATASET.KEY=VALUE``.

Values are read as YAML scalars (``false`` -> False, ``3`` -> 3, ``labeled`` -> "labeled"), as the
config's ``data.options.<dataset>.<key>=<value>`` overrides are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from dcac.data.datasets import canonical_name, is_custom


def _value(text: str) -> Any:
    return yaml.safe_load(text) if text else ""


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``["use_val=false"]`` -> ``{"use_val": False}`` (options of one dataset)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {item!r}: expected KEY=VALUE, e.g. use_val=false or split=3")
        options[key.strip()] = _value(value.strip())
    return options


def parse_dataset_options(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["msmt17.use_val=false", "grid.split=3"]`` -> ``{"msmt17": {"use_val": False}, "grid": {"split": 3}}``."""
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        dataset, dot, name = key.rpartition(".")
        if not sep or not dot or not dataset or not name:
            raise ValueError(f"--option {item!r}: expected DATASET.KEY=VALUE, e.g. msmt17.use_val=false")
        options.setdefault(dataset.strip(), {})[name.strip()] = _value(value.strip())
    return options


def options_for(name: str, options: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The options given for dataset ``name`` under any of its names (full, short, or a path's folder name)."""

    def key(text: str) -> str:
        if is_custom(text):
            return Path(text).stem
        try:
            return canonical_name(text)
        except ValueError:
            return text

    wanted = key(name)
    merged: dict[str, Any] = {}
    for given, values in options.items():
        if key(given) == wanted:
            merged.update(values)
    return merged
