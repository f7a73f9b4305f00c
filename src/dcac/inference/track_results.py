"""What ``dcac track`` writes: a tracker's (or ground-truth) MOT files and their frames → tracks linked across cameras.

For every camera (a MOT file plus its frame folder or video) each track is pooled into one feature
(:func:`dcac.inference.tracklets.tracklet_features`). Each track is then ranked against the tracks of every
other camera (with a single camera: against its other tracks, to re-link a broken track). Written to ``--out``:

- ``tracks.safetensors``: one feature per track in ``dcac extract``'s format, named
  ``<camera>/track_<id>.jpg`` under ``thumbnails/``, so ``dcac search --gallery`` and ``dcac index`` read it;
- ``thumbnails/<camera>/track_<id>.jpg``: the crop from the middle of each track;
- ``results.json`` / ``results.html``: every track's nearest tracks of the other cameras, as ``dcac search``
  writes them (thumbnails, squared Euclidean distances between L2-normalised features).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from dcac.inference.mot import DEFAULT_FRAME_PATTERN, MOTBox, iter_crops, read_mot

THUMBNAILS = "thumbnails"
TRACKS_FILE = "tracks.safetensors"
_SEQUENCE_SUBFOLDERS = ("gt", "det")  # MOTChallenge: <sequence>/gt/gt.txt, <sequence>/det/det.txt


@dataclass(frozen=True)
class Camera:
    name: str
    mot_file: Path
    frames: Path  # folder of frame images or a video file


def parse_cameras(values: list[list[str]]) -> list[Camera]:
    """``--camera MOT FRAMES [NAME]`` values; the default name is the MOTChallenge sequence folder's (or the
    MOT file's stem). Two cameras with one name are refused: their thumbnails would overwrite each other."""
    cameras = []
    for value in values:
        if len(value) not in (2, 3):
            raise ValueError(f"--camera takes MOT_FILE FRAMES [NAME], got {len(value)} values: {' '.join(value)}")
        mot_file, frames = Path(value[0]), Path(value[1])
        default = mot_file.parent.parent.name if mot_file.parent.name in _SEQUENCE_SUBFOLDERS else mot_file.stem
        name = value[2] if len(value) == 3 else default
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"--camera {' '.join(value)}: {name!r} cannot name a camera (give NAME, no '/')")
        cameras.append(Camera(name, mot_file, frames))
    names = [c.name for c in cameras]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"two --camera values are named {repeated[0]!r}: give each a NAME as third value")
    return cameras


def _thumbnail_boxes(boxes: list[MOTBox], track_ids: list[int]) -> dict[int, list[MOTBox]]:
    """Per track, its boxes ordered from the middle of its life outwards (the first that is in its frame wins)."""
    by_track: dict[int, list[MOTBox]] = {t: [] for t in track_ids}
    for box in boxes:
        if box.track_id in by_track:
            by_track[box.track_id].append(box)
    return {
        t: [bs[i] for i in sorted(range(len(bs)), key=lambda i, mid=len(bs) // 2: abs(i - mid))]
        for t, bs in by_track.items()
    }


def track_thumbnails(camera: Camera, track_ids: list[int], *, min_conf, frame_pattern) -> dict[int, Image.Image]:
    """One crop per track: the middle box's, or the nearest to it that lies in its frame."""
    ordered = _thumbnail_boxes(read_mot(camera.mot_file, min_conf=min_conf), track_ids)
    thumbnails: dict[int, Image.Image] = {}
    for attempt in range(max(map(len, ordered.values()), default=0)):
        wanted = [bs[attempt] for t, bs in ordered.items() if t not in thumbnails and attempt < len(bs)]
        if not wanted:
            break
        for index, crop in iter_crops(wanted, camera.frames, frame_pattern=frame_pattern):
            thumbnails.setdefault(wanted[index].track_id, crop)
    return thumbnails


def _nearest_other_tracks(features: torch.Tensor, cameras: list[str], topk: int):
    """Top-k squared Euclidean neighbours of each row among the rows of other cameras (or, with a single
    camera, among the other rows)."""
    from dcac.evaluation.distance import compute_distance

    dist = compute_distance(features, features, "euclidean")
    camera_ids = torch.tensor([sorted(set(cameras)).index(c) for c in cameras])
    same = camera_ids[:, None] == camera_ids[None, :] if len(set(cameras)) > 1 else torch.eye(len(cameras)).bool()
    dist[same] = float("inf")
    k = min(topk, int(torch.isfinite(dist).sum(dim=1).max()))
    return torch.topk(dist, k, dim=1, largest=False, sorted=True)  # a camera with fewer candidates: inf at the end


def write_track_results(predictor, cameras: list[Camera], out: str | Path, **options) -> tuple[int, Path]:
    """Everything the module docstring lists; returns the number of tracks and the HTML page's path.

    ``options``: ``topk``, ``min_conf``, ``max_crops_per_track``, ``frame_pattern``, ``batch_size``,
    ``html_queries``."""
    from dcac.inference.feature_store import FeatureSet, save_features
    from dcac.inference.ranked_list import RankedEntry, RankedQuery
    from dcac.inference.search_page import write_search_results
    from dcac.inference.tracklets import tracklet_features

    out = Path(out)
    pattern = options.get("frame_pattern") or DEFAULT_FRAME_PATTERN
    frame_options = {"min_conf": options.get("min_conf"), "frame_pattern": pattern}
    names, rows, owners = [], [], []
    for camera in cameras:
        tracks = tracklet_features(
            predictor,
            camera.mot_file,
            camera.frames,
            camera=camera.name,
            max_crops_per_track=options.get("max_crops_per_track"),
            batch_size=options.get("batch_size"),
            **frame_options,
        )
        thumbnails = track_thumbnails(camera, tracks.track_ids, **frame_options)
        (out / THUMBNAILS / camera.name).mkdir(parents=True, exist_ok=True)
        for track_id in tracks.track_ids:
            name = f"{camera.name}/track_{track_id}.jpg"
            thumbnails[track_id].save(out / THUMBNAILS / name, quality=95)
            names.append(name)
            owners.append(camera.name)
        rows.append(tracks.features)
    features = torch.cat(rows)
    checkpoint = str(options.get("checkpoint", ""))
    save_features(
        out / TRACKS_FILE,
        FeatureSet(features, names, out / THUMBNAILS, True, checkpoint, predictor.weights_sha256),
    )
    distances, indices = _nearest_other_tracks(features, owners, options.get("topk", 5))
    paths = [str(out / THUMBNAILS / n) for n in names]
    queries = [
        RankedQuery(
            paths[q],
            tuple(RankedEntry(r, paths[g], d) for r, (g, d) in enumerate(zip(row, drow), 1) if math.isfinite(d)),
        )
        for q, (row, drow) in enumerate(zip(indices.tolist(), distances.tolist()))
    ]
    _, html_path = write_search_results(
        out, queries, checkpoint=checkpoint, html_queries=options.get("html_queries", 100)
    )
    return len(names), html_path
