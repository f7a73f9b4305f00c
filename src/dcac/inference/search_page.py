"""Writing search results: ``results.json`` (the ranked lists of every query) and ``results.html``
(thumbnails, ranks, distances, true/false matches coloured when identities are known).

The page embeds its thumbnails (about 20 kB per query), so it shows at most ``html_queries`` queries and
says how many it left out: a 10,000-query search would otherwise write a page of ~200 MB that no browser
opens.  The JSON always holds every query.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dcac.evaluation.rerank_params import RerankSpec, resolve_rerank
from dcac.inference.html_parts import html_page, ranked_rows_html
from dcac.inference.ranked_list import RankedQuery
from dcac.storage.checkpoint import write_json_atomic, write_text_atomic

RESULTS_JSON = "results.json"
RESULTS_HTML = "results.html"
DEFAULT_HTML_QUERIES = 100


def _distance_text(rerank: RerankSpec) -> str:
    params = resolve_rerank(rerank)
    if params is None:
        return "squared euclidean between L2-normalised features"
    return f"k-reciprocal re-ranked (k1={params.k1}, k2={params.k2}, lambda={params.lambda_value}) squared euclidean"


def search_results_dict(
    queries: Sequence[RankedQuery], *, checkpoint: str, after_bn: bool, rerank: RerankSpec = None
) -> dict[str, Any]:
    return {
        "checkpoint": checkpoint,
        "feature": "f_bn" if after_bn else "f",
        "distance": _distance_text(rerank),
        "queries": [q.to_dict() for q in queries],
    }


def write_search_results(
    out_dir: str | Path,
    queries: Sequence[RankedQuery],
    *,
    checkpoint: str,
    after_bn: bool = True,
    thumb_height: int = 128,
    rerank: RerankSpec = None,
    html_queries: int = DEFAULT_HTML_QUERIES,
) -> tuple[Path, Path]:
    """Write ``results.json`` (all queries) and the self-contained ``results.html`` (the first
    ``html_queries``) into ``out_dir``; return both paths."""
    if html_queries < 0:
        raise ValueError(f"html_queries must be at least 0, got {html_queries}")
    out_dir = Path(out_dir)
    json_path, html_path = out_dir / RESULTS_JSON, out_dir / RESULTS_HTML
    write_json_atomic(json_path, search_results_dict(queries, checkpoint=checkpoint, after_bn=after_bn, rerank=rerank))
    shown = list(queries[:html_queries])
    known = sum(q.pid is not None for q in queries)
    left_out = len(queries) - len(shown)
    body = (
        f'<p class="note">checkpoint {html.escape(checkpoint)} · feature {"f_bn" if after_bn else "f"} · '
        f"distance: {html.escape(_distance_text(rerank))} · "
        f"borders: green = same identity, red = different identity, grey = identity unknown "
        f"({known} of {len(queries)} queries have a known identity: a Market-style name, a CSV list's row "
        "or a folder-per-identity dataset)</p>\n"
        + (
            f'<p class="note">showing the first {len(shown)} of {len(queries)} queries; all of them are in '
            f"{RESULTS_JSON}</p>\n"
            if left_out
            else ""
        )
        + ranked_rows_html(shown, thumb_height)
    )
    write_text_atomic(html_path, html_page(f"dcac search: {len(queries)} queries", body))
    return json_path, html_path
