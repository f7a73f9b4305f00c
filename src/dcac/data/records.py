"""Image records and the in-memory form of a Re-ID dataset (train / query / gallery lists).

Conventions shared by every loader (docs/method.md §7):
- pid -1 marks junk images and is dropped from every split;
- pid 0 marks distractors only in the datasets that use it so (Market-1501, GRID, the Market layout of a
  user's folder): ``ReIDDataset.distractor_pids``; elsewhere (MSMT17, ...) 0 is an ordinary identity;
- train pids are relabelled to 0..N-1 in the order of the *sorted* original ids, so every process of a
  distributed run builds the same label map (unsorted maps are a known fast-reid DDP bug);
- query/gallery keep their original pids, because evaluation only compares them with each other;
- camids are 0-based.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dcac.data.errors import EmptySplitError

JUNK_PID = -1


@dataclass(frozen=True)
class ImageRecord:
    """One image: its path, identity, camera (0-based) and the dataset it comes from."""

    path: str
    pid: int
    camid: int
    dataset: str


def drop_junk(records: Iterable[ImageRecord]) -> list[ImageRecord]:
    """Remove the junk images (pid -1)."""
    return [r for r in records if r.pid != JUNK_PID]


def sorted_label_map(pids: Iterable[int]) -> dict[int, int]:
    """Map each distinct id to its rank among the sorted distinct ids (0..N-1)."""
    return {pid: label for label, pid in enumerate(sorted(set(pids)))}


def relabel_pids(records: Sequence[ImageRecord]) -> list[ImageRecord]:
    """Replace each record's pid by its label from :func:`sorted_label_map`."""
    label_of = sorted_label_map(r.pid for r in records)
    return [ImageRecord(r.path, label_of[r.pid], r.camid, r.dataset) for r in records]


def _split_stats(records: Sequence[ImageRecord]) -> tuple[int, int, int]:
    return len({r.pid for r in records}), len(records), len({r.camid for r in records})


@dataclass
class ReIDDataset:
    """A loaded dataset: train records (pids relabelled 0..N-1) and query/gallery records (original pids).

    Construct it with :meth:`from_splits`, which applies the conventions of this module; the plain
    constructor only validates. ``train_only`` datasets (CUHK02, CUHK-SYSU in the classic protocol) have
    empty query and gallery lists; ``eval_only`` datasets (a user's query + gallery folder) have an empty
    train list; every other dataset must have images in all three splits.
    """

    name: str
    root: str
    train: list[ImageRecord]
    query: list[ImageRecord]
    gallery: list[ImageRecord]
    train_only: bool = False
    notes: list[str] = field(default_factory=list)
    eval_only: bool = False
    distractor_pids: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if self.train_only and self.eval_only:
            raise ValueError(f"dataset {self.name!r}: cannot be both train_only and eval_only")
        required = {"train": self.train, "query": self.query, "gallery": self.gallery}
        if self.train_only:
            required = {"train": self.train}
        elif self.eval_only:
            required = {"query": self.query, "gallery": self.gallery}
        for split, records in required.items():
            if not records:
                raise EmptySplitError(
                    f"dataset {self.name!r} at {self.root}: the {split} split has no images "
                    "(after dropping junk images with pid -1); check the dataset folder"
                )
        labels = sorted({r.pid for r in self.train})
        if labels != list(range(len(labels))):
            raise ValueError(
                f"dataset {self.name!r}: train pids must be labels 0..N-1; "
                "build the dataset with ReIDDataset.from_splits"
            )
        for split, records in (("train", self.train), ("query", self.query), ("gallery", self.gallery)):
            bad = next((r for r in records if r.camid < 0), None)
            if bad is not None:
                raise ValueError(f"dataset {self.name!r}: negative camid {bad.camid} in {split} ({bad.path})")

    def labels(self) -> tuple[list[int], list[int], list[int], list[int]]:
        """Query pids, gallery pids, query camids, gallery camids: the order the evaluation functions take."""
        return (
            [r.pid for r in self.query],
            [r.pid for r in self.gallery],
            [r.camid for r in self.query],
            [r.camid for r in self.gallery],
        )

    @classmethod
    def from_splits(
        cls,
        name: str,
        root: str,
        *,
        train: Iterable[ImageRecord],
        query: Iterable[ImageRecord],
        gallery: Iterable[ImageRecord],
        train_only: bool = False,
        notes: Iterable[str] = (),
        eval_only: bool = False,
        distractor_pids: Iterable[int] = (),
    ) -> ReIDDataset:
        """Drop junk everywhere (counted in the notes), relabel train pids from the sorted ids, and validate."""
        splits = {"train": list(train), "query": list(query), "gallery": list(gallery)}
        kept = {split: drop_junk(records) for split, records in splits.items()}
        junk = sum(len(splits[s]) - len(kept[s]) for s in splits)
        all_notes = list(notes) + ([f"dropped {junk} junk images (pid -1)"] if junk else [])
        return cls(
            name=name,
            root=str(root),
            train=relabel_pids(kept["train"]),
            query=kept["query"],
            gallery=kept["gallery"],
            train_only=train_only,
            notes=all_notes,
            eval_only=eval_only,
            distractor_pids=frozenset(distractor_pids),
        )

    @property
    def num_train_pids(self) -> int:
        return len({r.pid for r in self.train})

    @property
    def num_train_cams(self) -> int:
        """Size of a camera table indexed by train camid (max camid + 1), 0 for an empty train split."""
        return max((r.camid for r in self.train), default=-1) + 1

    def summary(self) -> str:
        """A statistics table: identities / images / cameras per split."""
        lines = [
            f"Dataset {self.name} ({self.root})",
            f"  {'split':<8} | {'ids':>6} | {'images':>7} | {'cameras':>7}",
            f"  {'-' * 8}-+-{'-' * 6}-+-{'-' * 7}-+-{'-' * 7}",
        ]
        for split, records in (("train", self.train), ("query", self.query), ("gallery", self.gallery)):
            ids, images, cams = _split_stats(records)
            lines.append(f"  {split:<8} | {ids:>6} | {images:>7} | {cams:>7}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)
