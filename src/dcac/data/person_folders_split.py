"""``dcac data split``: a folder of one sub-folder per person (own photos, no split) → a query/gallery CSV list.

::

    <folder>/<person>/<image>              or, with cameras,    <folder>/<person>/<camera>/<image>

The list is the ``csv`` layout (``path,pid,camid,split``, paths relative to the list file), so ``dcac eval
--target LIST.csv``, ``data check`` and ``search`` read it. The split is seeded and follows the usual Re-ID
protocol: per person, one query image per camera as long as the person keeps a gallery image from another
camera; without cameras, one query per person with at least two images (and every query is then matched
against the whole gallery). Everything else is gallery: people seen by one camera only, or with one image,
are gallery images no query can match (distractors), which the summary says.
"""

from __future__ import annotations

import csv
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from dcac.data.datasets.market_layout import images_in
from dcac.data.errors import DatasetLayoutError

# Split folders of the market and folders layouts: a folder holding them is a dataset, not a person.
DATASET_SPLIT_FOLDERS = ("bounding_box_train", "bounding_box_test", "query", "gallery", "train")


@dataclass(frozen=True)
class Photo:
    path: Path
    person: str
    camera: str | None


@dataclass
class PersonSplit:
    """The rows of the list and what ``format`` says about them."""

    folder: Path
    query: list[Photo] = field(default_factory=list)
    gallery: list[Photo] = field(default_factory=list)
    gallery_only: list[str] = field(default_factory=list)  # people no query can match
    cameras: list[str] = field(default_factory=list)

    def format(self, out: Path, seed: int) -> str:
        people = len({p.person for p in self.query + self.gallery})
        rule = (
            f"one query per person and camera ({len(self.cameras)} cameras), each keeping a gallery image of "
            "the person from another camera"
            if self.cameras
            else "one query per person with 2+ images; no cameras, so each query is matched against the whole gallery"
        )
        return (
            f"{self.folder}: {people} people, {len(self.query) + len(self.gallery)} images -> {out} (seed {seed}): "
            f"{len(self.query)} query images ({rule}), {len(self.gallery)} gallery images"
            + (
                f"; {len(self.gallery_only)} people only in the gallery ("
                + ("seen by one camera only" if self.cameras else "a single image")
                + f", e.g. {self.gallery_only[0]}): no query can match them"
                if self.gallery_only
                else ""
            )
        )


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_person_folders(folder: str | Path) -> list[Photo]:
    """Every image of ``folder/<person>/[<camera>/]``; a person folder with both images and sub-folders is refused."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder}")
    photos = []
    for person in _subfolders(folder):
        images, cameras = images_in(person), _subfolders(person)
        if images and cameras:
            raise DatasetLayoutError(
                f"{person}: holds both images and sub-folders; expected <person>/<image> or <person>/<camera>/<image>"
            )
        photos += [Photo(p, person.name, None) for p in images]
        photos += [Photo(p, person.name, camera.name) for camera in cameras for p in images_in(camera)]
    if not photos:
        raise DatasetLayoutError(f"{folder}: no images in <person>/ or <person>/<camera>/ sub-folders")
    if len({p.camera is None for p in photos}) > 1:
        raise DatasetLayoutError(f"{folder}: some people have camera sub-folders and some not; use one way for all")
    return photos


def looks_like_person_folders(folder: Path) -> bool:
    """Sub-folders holding images (directly or one level down) and no images of its own: one folder per person.

    A folder of datasets (``data/market1501/query/…``) is not one: split folder names one level down say so."""
    if not folder.is_dir() or images_in(folder):
        return False
    subfolders = _subfolders(folder)
    inner = [c for s in subfolders for c in _subfolders(s)]
    if any(c.name in DATASET_SPLIT_FOLDERS for c in inner):
        return False
    return any(images_in(s) for s in subfolders) or any(images_in(c) for c in inner)


def _every_query_matched(query_cameras: set[str], gallery: dict[str, list[Photo]]) -> bool:
    """Each query camera still has a gallery image of the person from another camera."""
    return all(any(ps for c, ps in gallery.items() if c != q) for q in query_cameras)


def _pick_queries(photos: list[Photo], rng: random.Random) -> tuple[list[Photo], list[Photo]]:
    """(queries, gallery) of one person's photos, as the module docstring says."""
    if photos[0].camera is None:  # no cameras: any other image of the person is a match
        queries = [rng.choice(photos)] if len(photos) > 1 else []
        return queries, [p for p in photos if p not in queries]
    gallery: dict[str, list[Photo]] = {}
    for photo in photos:
        gallery.setdefault(photo.camera, []).append(photo)
    queries: list[Photo] = []
    # Cameras in random order; a camera's query is taken only if every query keeps a cross-camera match.
    for camera in rng.sample(sorted(gallery), len(gallery)):
        query = rng.choice(gallery[camera])
        rest = {**gallery, camera: [p for p in gallery[camera] if p != query]}
        if _every_query_matched({q.camera for q in queries} | {camera}, rest):
            queries.append(query)
            gallery = rest
    return queries, [p for ps in gallery.values() for p in ps]


def split_person_folders(folder: str | Path, *, seed: int = 0) -> PersonSplit:
    photos = scan_person_folders(folder)
    result = PersonSplit(Path(folder), cameras=sorted({p.camera for p in photos if p.camera is not None}))
    rng = random.Random(seed)
    by_person: dict[str, list[Photo]] = {}
    for photo in photos:
        by_person.setdefault(photo.person, []).append(photo)
    for person, own in by_person.items():
        queries, gallery = _pick_queries(own, rng)
        result.query += queries
        result.gallery += gallery
        if not queries:
            result.gallery_only.append(person)
    if not result.query:
        raise DatasetLayoutError(
            f"{folder}: no person has two images"
            + (" from two cameras" if result.cameras else "")
            + ": no query could have a match"
        )
    return result


def write_split_list(split: PersonSplit, out: str | Path) -> Path:
    """The CSV list (header ``path,pid,camid,split``); pids are the person folders' integer names when they
    all are integers, else their sorted order; camids the camera folders' sorted order (empty: no cameras)."""
    out = Path(out)
    people = sorted({p.person for p in split.query + split.gallery})
    numeric = all(n.lstrip("-").isdigit() for n in people) and len({int(n) for n in people}) == len(people)
    pid = {name: int(name) if numeric else index for index, name in enumerate(people)}
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "pid", "camid", "split"])
        for name, photos in (("query", split.query), ("gallery", split.gallery)):
            for photo in sorted(photos, key=lambda p: str(p.path)):
                camid = "" if photo.camera is None else split.cameras.index(photo.camera)
                path = Path(os.path.relpath(photo.path.resolve(), out.parent.resolve())).as_posix()
                writer.writerow([path, pid[photo.person], camid, name])
    return out
