"""``dcac data check``: what is in a dataset and what would go wrong, before anyone spends GPU hours on it.

Reported per split: identities, images, cameras; identities with a single readable image (a training identity with
one image is repeated to fill its K slots and never gives a positive pair from two different images; a
query identity with one gallery image is fine); unreadable images (every file is decoded once); duplicate
files (same bytes, found by SHA-1), above all duplicates shared by query and gallery (a query that is
also a gallery image matches itself when the no-camera rule applies); and what would be dropped: junk
images (pid -1, already dropped by the loader and counted in its notes), unreadable images (with
``data.on_corrupt=skip``) and queries without a valid gallery match (no gallery image of their identity
from another camera), which the evaluation skips.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from dcac.data.image_io import verify_images
from dcac.data.records import ImageRecord, ReIDDataset

SPLITS = ("train", "query", "gallery")


@dataclass
class CheckReport:
    """The findings of :func:`check_dataset`; ``format()`` is what ``dcac data check`` prints."""

    dataset: ReIDDataset
    single_image_ids: dict[str, int]
    unreadable: list[str]
    duplicate_groups: list[list[str]]
    query_gallery_duplicates: int
    queries_without_match: int
    problems: list[str] = field(default_factory=list)

    def format(self) -> str:
        lines = [self.dataset.summary(), "checks:"]
        lines += [
            f"  {split}: {count} identities with a single image" for split, count in self.single_image_ids.items()
        ]
        lines.append(
            f"  unreadable images: {len(self.unreadable)}"
            + (f" (first: {self.unreadable[0]})" if self.unreadable else "")
        )
        lines.append(
            f"  duplicate files: {len(self.duplicate_groups)} groups of identical files"
            + (f" (e.g. {', '.join(self.duplicate_groups[0][:3])})" if self.duplicate_groups else "")
            + f"; {self.query_gallery_duplicates} shared by query and gallery"
        )
        lines.append(f"  repeated list rows: {self.dataset.repeated_rows} (dropped by the loader)")
        lines.append(
            "would be dropped: unreadable images (with data.on_corrupt=skip, else training stops at the "
            f"first): {len(self.unreadable)}; queries without a gallery match from another camera "
            f"(skipped by the evaluation): {self.queries_without_match}"
        )
        lines += [f"problem: {problem}" for problem in self.problems]
        lines.append("OK" if not self.problems else f"{len(self.problems)} problem(s)")
        return "\n".join(lines)


def _file_digest(path: str) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def _single_image_ids(records: list[ImageRecord]) -> int:
    return sum(count == 1 for count in Counter(r.pid for r in records).values())


def _queries_without_match(dataset: ReIDDataset) -> int:
    cameras_of = defaultdict(set)
    for r in dataset.gallery:
        cameras_of[r.pid].add(r.camid)
    return sum(not (cameras_of[q.pid] - {q.camid}) for q in dataset.query)


def _duplicates(dataset: ReIDDataset, readable: set[str]) -> tuple[list[list[str]], int]:
    by_digest: dict[str, list[ImageRecord]] = defaultdict(list)
    for split in SPLITS:
        for r in getattr(dataset, split):
            if r.path in readable:
                by_digest[_file_digest(r.path)].append(r)
    groups = [sorted({r.path for r in rs}) for rs in by_digest.values() if len({r.path for r in rs}) > 1]
    query_paths, gallery_paths = {r.path for r in dataset.query}, {r.path for r in dataset.gallery}
    shared = sum(
        bool({r.path for r in rs} & query_paths) and bool({r.path for r in rs} & gallery_paths)
        for rs in by_digest.values()
    )
    return sorted(groups), shared


def check_dataset(dataset: ReIDDataset, *, num_workers: int = 1) -> CheckReport:
    """Decode and hash every image of ``dataset`` and collect the findings listed in the module docstring."""
    records = list(dict.fromkeys(dataset.train + dataset.query + dataset.gallery))
    kept, _ = verify_images(records, "skip", num_workers=num_workers)
    readable = {r.path for r in kept}
    unreadable = sorted({r.path for r in records} - readable)
    groups, shared = _duplicates(dataset, readable)
    # Query identities usually have one image each; only train and gallery singletons are worth a line.
    single = {
        split: _single_image_ids([r for r in getattr(dataset, split) if r.path in readable])
        for split in ("train", "gallery")
    }
    report = CheckReport(dataset, single, unreadable, groups, shared, _queries_without_match(dataset))
    if unreadable:
        report.problems.append(f"{len(unreadable)} unreadable images")
    if dataset.repeated_rows:
        report.problems.append(f"{dataset.repeated_rows} list rows repeat a file already listed: fix the list")
    if dataset.query and report.queries_without_match == len(dataset.query):
        report.problems.append("no query has a gallery match from another camera: the evaluation has nothing to score")
    if shared:
        report.problems.append(f"{shared} files are both query and gallery images")
    return report
