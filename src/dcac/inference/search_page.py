"""Writing search results: ``results.json`` (the ranked lists) and ``results.html`` (thumbnails, ranks,
distances, true/false matches coloured when identities are known)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

from dcac.engine.checkpoint import write_json_atomic, write_text_atomic
from dcac.inference.html_parts import html_page, ranked_rows_html
from dcac.inference.ranked_list import RankedQuery

RESULTS_JSON = "results.json"
RESULTS_HTML = "results.html"


def search_results_dict(queries: Sequence[RankedQuery], *, checkpoint: str, after_bn: bool) -> dict[str, Any]:
    return {
        "checkpoint": checkpoint,
        "feature": "f_bn" if after_bn else "f",
        "distance": "squared euclidean between L2-normalised features",
        "queries": [q.to_dict() for q in queries],
    }


def write_search_results(
    out_dir: str | Path,
    queries: Sequence[RankedQuery],
    *,
    checkpoint: str,
    after_bn: bool = True,
    thumb_height: int = 128,
) -> tuple[Path, Path]:
    """Write ``results.json`` and the self-contained ``results.html`` into ``out_dir``; return both paths."""
    out_dir = Path(out_dir)
    json_path, html_path = out_dir / RESULTS_JSON, out_dir / RESULTS_HTML
    write_json_atomic(json_path, search_results_dict(queries, checkpoint=checkpoint, after_bn=after_bn))
    known = sum(q.pid is not None for q in queries)
    body = (
        f'<p class="note">checkpoint {html.escape(checkpoint)} · feature {"f_bn" if after_bn else "f"} · '
        "distance: squared Euclidean between L2-normalised features · "
        f"borders: green = same identity, red = different identity, grey = identity unknown "
        f"({known} of {len(queries)} queries have Market-style names)</p>\n"
        + ranked_rows_html(queries, thumb_height)
    )
    write_text_atomic(html_path, html_page(f"dcac search: {len(queries)} queries", body))
    return json_path, html_path
