"""Source -> target protocols: which datasets train a model and which ones evaluate it.

A setting is written ``"<sources>_to_<targets>"`` with ``+`` between names, e.g. ``"ma_to_ms"`` or
``"ma+d+c3_to_ms"`` (short or full dataset names). Training merges the sources into one
:class:`TrainSet`: identities are relabelled 0..N-1 over all sources, source by source in the order given
(each source's ids sorted, then offset by the ids of the sources before it), and camera ids are offset
the same way, so no two sources share an identity or a camera label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dcac.data.datasets import canonical_name, dataset_key, get_dataset
from dcac.data.options import options_for
from dcac.data.records import ImageRecord, ReIDDataset, sorted_label_map

# Leave-one-out multi-source settings over Market-1501, DukeMTMC-reID, MSMT17 and CUHK03 (detected).
LEAVE_ONE_OUT_SETTINGS = ("d+ms+c3_to_ma", "ma+ms+c3_to_d", "ma+d+c3_to_ms", "ma+d+ms_to_c3")
# The classic large multi-source protocol: five training sets, four small test sets.
CLASSIC_MULTI_SOURCE_SETTING = "ma+d+c2+c3+cs_to_prid+grid+viper+ilids"
# The single-source settings of the released DCAC recipe.
RELEASED_SINGLE_SOURCE_SETTINGS = ("ma_to_ms", "ms_to_ma", "d_to_ma", "c3_to_ma")

_TRAIN_GROUP, _TEST_GROUP = 0, 1  # query and gallery of one source share identities; train ones are others


def parse_setting(setting: str) -> tuple[list[str], list[str]]:
    """``"ma+d+c3_to_ms"`` -> ``(["market1501", "dukemtmc", "cuhk03"], ["msmt17"])``."""
    parts = setting.split("_to_")
    if len(parts) != 2 or not all(parts):
        raise ValueError(
            f"cannot parse setting {setting!r}: expected '<source>[+<source>...]_to_<target>"
            "[+<target>...]', e.g. 'ma_to_ms' or 'ma+d+c3_to_ms'"
        )
    sources, targets = ([canonical_name(n) for n in part.split("+")] for part in parts)
    for role, names in (("source", sources), ("target", targets)):
        if len(set(names)) != len(names):
            raise ValueError(f"setting {setting!r} names a {role} dataset twice")
    return sources, targets


@dataclass(frozen=True)
class TrainSet:
    """The merged training records of one or more sources, with globally unique pids and camids."""

    records: list[ImageRecord]
    num_ids: int
    num_cams: int
    sources: tuple[str, ...]
    id_offsets: dict[str, int] = field(default_factory=dict)
    cam_offsets: dict[str, int] = field(default_factory=dict)

    @property
    def pids(self) -> list[int]:
        return [r.pid for r in self.records]


@dataclass
class Protocol:
    """A training set built from the sources and the target datasets to evaluate on."""

    train: TrainSet
    targets: dict[str, ReIDDataset]

    def summary(self) -> str:
        lines = [
            f"Training on {' + '.join(self.train.sources)}: {self.train.num_ids} ids, "
            f"{len(self.train.records)} images, {self.train.num_cams} cameras"
        ]
        for name, dataset in self.targets.items():
            lines.append(
                f"Target {name}: {len({r.pid for r in dataset.query})} query ids, "
                f"{len(dataset.query)} query / {len(dataset.gallery)} gallery images"
            )
        return "\n".join(lines)


def _training_records(dataset: ReIDDataset, all_splits: bool) -> list[tuple[tuple[int, int], ImageRecord]]:
    """(identity key, record) pairs; the key keeps train ids apart from query/gallery ids of the source."""
    keyed = [((_TRAIN_GROUP, r.pid), r) for r in dataset.train]
    if all_splits:
        # The dataset's distractor ids (Market-1501's 0) are not identities (junk -1 is already dropped);
        # every other test id is a new class, MSMT17's test identity 0 included.
        keyed += [
            ((_TEST_GROUP, r.pid), r) for r in dataset.query + dataset.gallery if r.pid not in dataset.distractor_pids
        ]
    return keyed


def merge_sources(datasets: Sequence[ReIDDataset], *, all_splits: bool = False) -> TrainSet:
    """Merge the sources' training records with per-source id and camera offsets (in the given order)."""
    records: list[ImageRecord] = []
    id_offsets: dict[str, int] = {}
    cam_offsets: dict[str, int] = {}
    num_ids = num_cams = 0
    names = [d.name for d in datasets]
    for dataset in datasets:
        if names.count(dataset.name) > 1:
            raise ValueError(
                f"two sources are named {dataset.name!r} ({', '.join(d.root for d in datasets if d.name == dataset.name)}): "
                "rename one (a dataset is named after its folder, a list file after its file name), as a "
                "dataset's name keys its identity and camera offsets"
            )
        if dataset.eval_only:
            raise ValueError(
                f"{dataset.name} ({dataset.root}) has no train split (evaluation-only) and cannot be a source"
            )
        keyed = _training_records(dataset, all_splits)
        label_of = sorted_label_map(key for key, _ in keyed)
        id_offsets[dataset.name], cam_offsets[dataset.name] = num_ids, num_cams
        records += [ImageRecord(r.path, num_ids + label_of[key], num_cams + r.camid, r.dataset) for key, r in keyed]
        num_ids += len(label_of)
        num_cams += max(r.camid for _, r in keyed) + 1
    return TrainSet(records, num_ids, num_cams, tuple(d.name for d in datasets), id_offsets, cam_offsets)


def build_protocol(
    sources: Sequence[str],
    targets: Sequence[str],
    root: str | Path,
    *,
    all_splits: bool = False,
    dataset_options: Mapping[str, Mapping[str, object]] | None = None,
    verbose: bool = False,
) -> Protocol:
    """Load the sources and targets from the data root ``root`` and merge the sources for training.

    A source or target may be the path of a user's dataset (its own root; see ``datasets.custom``).
    ``dataset_options`` maps a dataset name (full or short; a user's dataset by its folder name) to its
    loader options, e.g. ``{"ms": {"use_val": False}, "c3": {"variant": "labeled"}, "shop_a": {"layout":
    "folders"}}``. ``all_splits=True`` trains on the sources' train, query and gallery images (distractors
    and junk excluded).
    """
    source_names = [dataset_key(n) for n in sources]
    target_names = [dataset_key(n) for n in targets]
    if not source_names or not target_names:
        raise ValueError("a protocol needs at least one source and one target dataset")
    loaded: dict[str, ReIDDataset] = {}
    for name in dict.fromkeys(source_names + target_names):
        loaded[name] = get_dataset(name, root, verbose=verbose, **options_for(name, dataset_options or {}))
    for name in target_names:
        if loaded[name].train_only:
            raise ValueError(f"{name} is a training-only dataset (no query/gallery) and cannot be a target")
    protocol = Protocol(
        merge_sources([loaded[n] for n in source_names], all_splits=all_splits),
        {loaded[n].name: loaded[n] for n in target_names},
    )
    if verbose:
        print(protocol.summary())
    return protocol
