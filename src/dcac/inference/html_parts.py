"""Self-contained HTML: images embedded as base64 data URIs, so a page can be mailed or archived alone.

Shared by the search page and the run report: the page skeleton, thumbnails and the ranked-list rows
(green border = true match, red = false match, grey = identity unknown).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from dcac.data.file_names import printable
from dcac.inference.image_inputs import ImageInputError, load_rgb
from dcac.inference.ranked_list import RankedQuery

MATCH_COLOURS = {True: "#2e9e44", False: "#d62728", None: "#9e9e9e"}
QUERY_COLOUR = "#1f5fbf"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1, h2 { font-weight: 600; }
table.metrics { border-collapse: collapse; margin: 0.5em 0 1.5em; }
table.metrics th, table.metrics td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
table.metrics th:first-child, table.metrics td:first-child { text-align: left; }
.ranked-row { display: flex; align-items: flex-start; gap: 6px; margin: 0 0 12px; flex-wrap: wrap; }
.cell { text-align: center; font-size: 11px; }
.cell img, .cell .missing { display: block; border: 4px solid; box-sizing: content-box; }
.cell .missing { width: 64px; font-size: 10px; overflow-wrap: anywhere; padding: 2px; }
.cell .name { max-width: 9em; overflow-wrap: anywhere; color: #444; }
.separator { width: 12px; }
.note { color: #666; font-size: 90%; }
"""


def data_uri(png_or_jpeg: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(png_or_jpeg).decode('ascii')}"


def thumbnail_data_uri(path: str | Path, height: int = 128) -> str | None:
    """A JPEG thumbnail of ``height`` pixels as a data URI, or ``None`` when the file cannot be read."""
    try:
        image = load_rgb(Path(path))
    except (FileNotFoundError, ImageInputError):
        return None
    width = max(1, round(image.width * height / image.height))
    buffer = io.BytesIO()
    image.resize((width, height), Image.BILINEAR).save(buffer, format="JPEG", quality=85)
    return data_uri(buffer.getvalue(), "image/jpeg")


def _short_name(path: str) -> str:
    """The file name under its folder's name (``0042/cam1/a.jpg`` → ``cam1/a.jpg``): enough to find it, short
    enough for a thumbnail's width; the full path is the cell's tooltip."""
    parts = Path(path).parts
    return "/".join(parts[-2:])


def _image_cell(path: str, caption: str, border: str, css_class: str, height: int, title: str) -> str:
    uri = thumbnail_data_uri(path, height)
    if uri is None:
        picture = f'<div class="missing" style="border-color:{border};height:{height}px">missing: {html.escape(Path(path).name)}</div>'
    else:
        picture = (
            f'<img src="{uri}" height="{height}" style="border-color:{border}" alt="{html.escape(Path(path).name)}">'
        )
    name = f'<div class="name">{html.escape(_short_name(path))}</div>'
    return f'<div class="cell {css_class}" title="{html.escape(title)}">{picture}{name}{caption}</div>'


def _id_text(pid: int | None, camid: int | None) -> str:
    return "" if pid is None else f"id {pid} cam {camid}"


def ranked_rows_html(queries: Sequence[RankedQuery], thumb_height: int = 128) -> str:
    """One row per query: the query image (blue border), then its ranked gallery images."""
    rows = []
    for query in queries:
        cells = [
            _image_cell(
                query.path,
                f"query<br>{_id_text(query.pid, query.camid)}",
                QUERY_COLOUR,
                "query",
                thumb_height,
                query.path,
            )
        ]
        cells.append('<div class="separator"></div>')
        for entry in query.entries:
            match = query.is_match(entry)
            caption = f"#{entry.rank}<br>{entry.distance:.3f}<br>{_id_text(entry.pid, entry.camid)}"
            title = f"{entry.path} (match: {'unknown' if match is None else match})"
            cells.append(
                _image_cell(
                    entry.path, caption, MATCH_COLOURS[match], f"match-{str(match).lower()}", thumb_height, title
                )
            )
        rows.append(f'<div class="ranked-row">{"".join(cells)}</div>')
    return "\n".join(rows)


def html_page(title: str, body: str) -> str:
    """The whole page, every file name in it made printable (``dcac.data.file_names``): valid UTF-8."""
    return printable(
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )
