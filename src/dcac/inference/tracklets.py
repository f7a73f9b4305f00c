"""A dcac model as a tracker's appearance model: tracklet features from a MOT file, searched across cameras.

``tracklet_features`` crops every box of a tracker's (or a ground-truth) MOT file from its frames, extracts
L2-normalised features and pools them per track id: the mean of the crop features, re-normalised — the
usual average pooling of video Re-ID.  ``match_tracklets`` ranks one camera's tracklets against another's
with ``dcac.rank`` (optionally re-ranked), so the same person can be linked across cameras.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from dcac.evaluation.rerank_params import RerankSpec
from dcac.inference.mot import DEFAULT_FRAME_PATTERN, MOTBox, iter_crops, no_box_inside, read_mot
from dcac.inference.predictor import ReIDPredictor
from dcac.inference.ranking import rank


@dataclass(frozen=True)
class Tracklets:
    """Pooled features of the tracks of one camera (rows in ascending track id order)."""

    camera: str
    track_ids: list[int]
    features: torch.Tensor  # T × D, L2-normalised
    num_crops: list[int]  # crops pooled into each row


def _spread(indices: list[int], limit: int | None) -> list[int]:
    """At most ``limit`` of ``indices``, evenly spaced over the track's life (first and last kept)."""
    if limit is None or len(indices) <= limit:
        return indices
    positions = torch.linspace(0, len(indices) - 1, limit).round().long().tolist()
    return [indices[p] for p in positions]


def tracklet_features(
    predictor: ReIDPredictor,
    mot_file: str | Path,
    frames_dir: str | Path,
    *,
    camera: str | None = None,
    min_conf: float | None = None,
    max_crops_per_track: int | None = 32,
    frame_pattern: str = DEFAULT_FRAME_PATTERN,
    batch_size: int | None = None,
) -> Tracklets:
    """Pooled features of every track in ``mot_file`` (boxes with id ``-1`` are left out).

    ``max_crops_per_track`` (None: all) bounds the work on long tracks; the crops kept are evenly spread.
    """
    boxes = [b for b in read_mot(mot_file, min_conf=min_conf) if b.track_id >= 0]
    by_track: dict[int, list[int]] = {}
    for index, box in enumerate(boxes):
        by_track.setdefault(box.track_id, []).append(index)
    if not by_track:
        raise ValueError(
            f"{mot_file}: no boxes with a track id (>= 0){'' if min_conf is None else f' and conf >= {min_conf}'}"
        )
    chosen = sorted(i for ids in by_track.values() for i in _spread(ids, max_crops_per_track))
    crops = dict(iter_crops([boxes[i] for i in chosen], frames_dir, frame_pattern=frame_pattern))
    if not crops:
        raise no_box_inside(mot_file, [boxes[i] for i in chosen], frames_dir)
    kept = [chosen[k] for k in sorted(crops)]
    feats = predictor.extract([crops[k] for k in sorted(crops)], batch_size=batch_size)
    row_of = {box_index: row for row, box_index in enumerate(kept)}
    track_ids, pooled, counts = [], [], []
    for track_id in sorted(by_track):
        rows = [row_of[i] for i in by_track[track_id] if i in row_of]
        if rows:
            track_ids.append(track_id)
            pooled.append(feats[rows].mean(dim=0))
            counts.append(len(rows))
    return Tracklets(camera or Path(mot_file).stem, track_ids, F.normalize(torch.stack(pooled), dim=1), counts)


@dataclass(frozen=True)
class TrackletMatch:
    query_track: int
    gallery_tracks: list[int]  # nearest first
    distances: list[float]


def match_tracklets(
    query: Tracklets, gallery: Tracklets, *, topk: int = 5, rerank: RerankSpec | bool = None
) -> list[TrackletMatch]:
    """For each tracklet of ``query`` (one camera), the nearest tracklets of ``gallery`` (another camera)."""
    indices, distances = rank(query.features, gallery.features, topk=topk, rerank=rerank)
    return [
        TrackletMatch(track, [gallery.track_ids[g] for g in row], dist)
        for track, row, dist in zip(query.track_ids, indices.tolist(), distances.tolist())
    ]


def detection_features(predictor: ReIDPredictor, boxes: list[MOTBox], frames_dir: str | Path, **kwargs) -> torch.Tensor:
    """One feature per box (rows in ``boxes`` order; a box outside its frame gets a zero row)."""
    crops = dict(iter_crops(boxes, frames_dir, **kwargs))
    feats = torch.zeros(len(boxes), predictor.feat_dim)
    if crops:
        feats[sorted(crops)] = predictor.extract([crops[i] for i in sorted(crops)])
    return feats
