"""Ranked retrieval results as data: what a search page, a report and the JSON output all show.

A match is *true* when both the query's and the gallery image's identities are known and equal, *false*
when both are known and differ, and unknown otherwise (``None``).  Identities come from the caller
(dataset records, or the layout the files lie in: ``dcac.inference.layout_identities``) or, for plain files,
from Market-style names (``dcac.data.datasets.market_layout.match_market_name``).

``camid`` here is the camera number as file names write it (1-based: ``0067_c2…`` is camera 2), what a
person reading a page expects; dataset records count cameras from 0, so records are shifted by one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from dcac.data.datasets.market_layout import match_market_name
from dcac.evaluation.distance import compute_distance


@dataclass(frozen=True)
class RankedEntry:
    rank: int  # 1-based
    path: str
    distance: float
    pid: int | None = None
    camid: int | None = None


@dataclass(frozen=True)
class RankedQuery:
    path: str
    entries: tuple[RankedEntry, ...]
    pid: int | None = None
    camid: int | None = None

    def is_match(self, entry: RankedEntry) -> bool | None:
        if self.pid is None or entry.pid is None:
            return None
        return entry.pid == self.pid

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.path,
            "pid": self.pid,
            "camid": self.camid,
            "results": [
                {
                    "rank": e.rank,
                    "path": e.path,
                    "distance": e.distance,
                    "pid": e.pid,
                    "camid": e.camid,
                    "match": self.is_match(e),
                }
                for e in self.entries
            ],
        }


class HasIdentity(Protocol):
    """What a dataset record offers (``dcac.data.records.ImageRecord`` fits)."""

    path: str
    pid: int
    camid: int


def _ids_from_name(path: str | Path) -> tuple[int | None, int | None]:
    parsed = match_market_name(path)
    return parsed if parsed is not None else (None, None)


def ranked_queries_from_paths(
    query_paths: Sequence[str | Path],
    gallery_paths: Sequence[str | Path],
    indices: torch.Tensor,
    distances: torch.Tensor,
    identities: Mapping[str, tuple[int, int | None]] | None = None,
) -> list[RankedQuery]:
    """Pair ``rank``'s output with file names; identities from ``identities`` (resolved path → pid, camid, as
    ``dcac.inference.layout_identities`` gives them), else parsed from Market-style names where possible."""
    if indices.shape[0] != len(query_paths):
        raise ValueError(f"{indices.shape[0]} ranked rows for {len(query_paths)} queries")
    known = identities or {}

    def ids(path: str | Path) -> tuple[int | None, int | None]:
        return known.get(str(Path(path).resolve())) or _ids_from_name(path)

    queries = []
    for q, (row_idx, row_dist) in enumerate(zip(indices.tolist(), distances.tolist())):
        entries = tuple(
            RankedEntry(rank, str(gallery_paths[g]), float(d), *ids(gallery_paths[g]))
            for rank, (g, d) in enumerate(zip(row_idx, row_dist), start=1)
        )
        queries.append(RankedQuery(str(query_paths[q]), entries, *ids(query_paths[q])))
    return queries


def sample_ranked_queries(
    query_feats: torch.Tensor,
    gallery_feats: torch.Tensor,
    query_records: Sequence[HasIdentity],
    gallery_records: Sequence[HasIdentity],
    *,
    num_queries: int = 8,
    topk: int = 10,
    seed: int = 0,
) -> list[RankedQuery]:
    """Ranked lists of a fixed random sample of queries, for a report.

    Gallery images of the query's identity taken by the query's camera are left out, exactly as evaluation
    leaves them out, so a red border here is an error that the metrics count.  The same
    ``seed`` picks the same queries in every report of a run, so successive reports show progress on
    the same people.
    """
    if len(query_records) != query_feats.shape[0] or len(gallery_records) != gallery_feats.shape[0]:
        raise ValueError(
            f"features/records mismatch: {query_feats.shape[0]} query features for {len(query_records)} records, "
            f"{gallery_feats.shape[0]} gallery features for {len(gallery_records)} records"
        )
    generator = torch.Generator().manual_seed(seed)
    picked = torch.randperm(len(query_records), generator=generator)[:num_queries].sort().values.tolist()
    # The evaluation's distances, so the lists show the ranking the metrics score.
    picked_dist = compute_distance(query_feats[picked].float().cpu(), gallery_feats.float().cpu(), "euclidean")
    gallery_pids = torch.tensor([r.pid for r in gallery_records])
    gallery_cams = torch.tensor([r.camid for r in gallery_records])
    queries = []
    for q, dist in zip(picked, picked_dist):
        record = query_records[q]
        dist[(gallery_pids == record.pid) & (gallery_cams == record.camid)] = float("inf")
        k = min(topk, int(torch.isfinite(dist).sum()))
        top_dist, top_idx = torch.topk(dist, k, largest=False, sorted=True)
        entries = tuple(
            RankedEntry(
                rank, str(gallery_records[g].path), float(d), gallery_records[g].pid, gallery_records[g].camid + 1
            )
            for rank, (g, d) in enumerate(zip(top_idx.tolist(), top_dist.tolist()), start=1)
        )
        queries.append(RankedQuery(str(record.path), entries, record.pid, record.camid + 1))
    return queries
