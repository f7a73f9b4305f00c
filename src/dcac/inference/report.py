"""The run report: ``RUN/report.html``, rewritten after every evaluation.

One self-contained page (plots and thumbnails are embedded as data URIs): the metrics of each target,
their CMC curves, ranked lists of sample queries, the evaluation history and the training curves read
from ``RUN/log.jsonl``.  The plots are also written as PNG files under ``RUN/plots/``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dcac.inference.html_parts import data_uri, html_page, ranked_rows_html
from dcac.inference.ranked_list import RankedQuery, sample_ranked_queries
from dcac.inference.training_log import TrainingLog, read_training_log
from dcac.storage.checkpoint import write_text_atomic
from dcac.storage.disk_space import reported_when_full
from dcac.storage.run_folder import LOG, REPORT_HTML, RUN_INFO

PLOTS_DIR = "plots"
CMC_PNG = "cmc.png"
TRAINING_PNG = "training_curves.png"
IDENTITY_PNG = "identity_information.png"

MECHANISM_NOTE = (
    "cond_gain: 1 - L_diff(c) / L_diff(null c) at the same noise; grad_ratio: |dL_diff/dz| / |dL_id/dz| "
    "(each weighted as in the loss); grad_cosine: cosine of -dL_diff/dz with onehot(y) - p (> 0: the teacher "
    "pushes p towards the true identity)"
)

# The headline numbers first, in the order papers report them; any other scalar follows.
_METRIC_ORDER = ("mAP", "rank1", "rank5", "rank10", "mINP", "num_valid_queries")


def _format_number(value: float | str) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="metrics"><tr>{head}</tr>{body}</table>'


def _metrics_table(metrics_by_target: Mapping[str, Mapping[str, Any]]) -> str:
    scalar_keys: list[str] = []
    for metrics in metrics_by_target.values():
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in scalar_keys:
                scalar_keys.append(key)
    keys = [k for k in _METRIC_ORDER if k in scalar_keys] + [k for k in scalar_keys if k not in _METRIC_ORDER]
    rows = [
        [target] + [_format_number(m[k]) if k in m else "" for k in keys] for target, m in metrics_by_target.items()
    ]
    return _table(["target", *keys], rows)


def _evaluation_history(log: TrainingLog) -> str:
    return _evaluation_history_rows(log.evaluations)


def _evaluation_history_rows(records: Sequence[Mapping[str, Any]]) -> str:
    """One row per record, one column per key any record has."""
    keys: list[str] = []
    for record in records:
        keys.extend(k for k in record if k not in keys)
    rows = [[_format_number(r[k]) if k in r else "" for k in keys] for r in records]
    return _table(keys, rows)


def _verification_section(target: str, verification: Mapping[str, Any]) -> str:
    """TPR at each FPR with its threshold, the EER, and the two distance histograms (``dcac eval --roc``)."""
    rows = [
        [key, f"{p['threshold']:.6g}", f"{100 * p['tpr']:.2f}", f"{p['fpr']:.2e}"]
        for key, p in verification["tpr_at_fpr"].items()
    ]
    rows.append(
        [
            "EER",
            f"{verification['eer_threshold']:.6g}",
            f"{100 * (1 - verification['eer']):.2f}",
            f"{verification['eer']:.2e}",
        ]
    )
    hist = verification["histogram"]
    edges = hist["edges"]
    bins = [
        [f"{edges[i]:.3g}-{edges[i + 1]:.3g}", str(g), str(n)]
        for i, (g, n) in enumerate(zip(hist["genuine"], hist["impostor"]))
        if g or n
    ]
    return (
        f"<h2>Verification: {html.escape(target)}</h2>"
        f'<p class="note">{verification["num_genuine_pairs"]} same-identity and '
        f"{verification['num_impostor_pairs']} different-identity pairs; {html.escape(verification['rule'])}</p>"
        + _table(["FPR at most", "threshold", "TPR %", "FPR"], rows)
        + _table(["distance", "same identity", "different identity"], bins)
    )


def _png_section(run_dir: Path, file_name: str, png: bytes, alt: str) -> str:
    plots_dir = run_dir / PLOTS_DIR
    plots_dir.mkdir(parents=True, exist_ok=True)
    with reported_when_full(plots_dir / file_name, len(png)):
        (plots_dir / file_name).write_bytes(png)
    return f'<img src="{data_uri(png, "image/png")}" alt="{html.escape(alt)}">'


def _run_summary(run_dir: Path) -> str:
    parts = [f"run folder {html.escape(str(run_dir.resolve()))}"]
    try:
        info = json.loads((run_dir / RUN_INFO).read_text())
    except (OSError, json.JSONDecodeError):
        info = {}
    for key in ("sources", "num_ids", "num_cams"):
        if key in info:
            parts.append(f"{key} {html.escape(str(info[key]))}")
    parts.append(f"written {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    return f'<p class="note">{" · ".join(parts)}</p>'


def write_report(
    run_dir: str | Path,
    metrics_by_target: Mapping[str, Mapping[str, Any]],
    *,
    ranked_samples: Mapping[str, Sequence[RankedQuery]] | None = None,
    log_path: str | Path | None = None,
    title: str | None = None,
) -> Path:
    """Write ``run_dir/report.html`` and return its path.

    ``metrics_by_target``: target name → that target's metrics as ``dcac.evaluation.targets`` returns them
    (scalars such as ``mAP``/``rank1`` in percent go into the table; ``cmc``, a list of fractions, is
    plotted).  ``ranked_samples``: target name → ranked lists (``sample_ranked_queries`` builds them).
    ``log_path`` defaults to ``run_dir/log.jsonl``; a missing log just leaves the curves out.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = read_training_log(Path(log_path) if log_path is not None else run_dir / LOG)
    try:
        from dcac.inference import plots
    except ImportError as err:  # matplotlib is the only optional piece; tables and ranked lists still render
        plots = None
        plots_missing = f'<p class="note">plots left out: {html.escape(str(err))} (pip install matplotlib)</p>'

    sections = [_run_summary(run_dir), "<h2>Metrics</h2>"]
    sections.append(_metrics_table(metrics_by_target) if metrics_by_target else '<p class="note">no evaluation yet</p>')
    cmc_by_target = {t: m["cmc"] for t, m in metrics_by_target.items() if m.get("cmc")}
    if cmc_by_target:
        sections.append("<h2>CMC</h2>")
        sections.append(
            _png_section(run_dir, CMC_PNG, plots.cmc_plot_png(cmc_by_target), "CMC curves") if plots else plots_missing
        )
    for target, metrics in metrics_by_target.items():
        if metrics.get("verification"):
            sections.append(_verification_section(target, metrics["verification"]))
    sections += _ranked_sections(ranked_samples or {})
    sections += _log_sections(run_dir, log, plots, plots_missing if plots is None else "")
    if log.skipped_lines:
        sections.append(f'<p class="note">{log.skipped_lines} unreadable line(s) of the log skipped</p>')
    path = run_dir / REPORT_HTML
    write_text_atomic(path, html_page(title or f"dcac report: {run_dir.name}", "\n".join(sections)))
    return path


def _ranked_sections(ranked_samples: Mapping[str, Sequence[RankedQuery]]) -> list[str]:
    sections = []
    for target, queries in (ranked_samples or {}).items():
        sections.append(f"<h2>Ranked lists: {html.escape(target)}</h2>")
        sections.append(
            '<p class="note">green = same identity, red = different identity; gallery images of the query\'s '
            "identity from the query's camera are excluded, as in evaluation</p>"
        )
        sections.append(ranked_rows_html(queries, thumb_height=96))
    return sections


def _log_sections(run_dir: Path, log: TrainingLog, plots, plots_missing: str) -> list[str]:
    """Evaluation history, training curves and the per-epoch identity information, from ``log.jsonl``."""
    sections = []
    if log.evaluations:
        sections.append("<h2>Evaluation history</h2>")
        sections.append(_evaluation_history(log))
    if log.steps:
        sections.append("<h2>Training curves</h2>")
        sections.append(
            _png_section(run_dir, TRAINING_PNG, plots.training_curves_png(log), "training curves")
            if plots
            else plots_missing
        )
    if plots and plots.has_identity_curves(log):
        sections.append("<h2>Identity information in the condition (per epoch)</h2>")
        sections.append(
            '<p class="note">mean entropy of p = softmax(z / tau) (ln N: uniform, nothing identity-specific '
            "reaches the teacher) and mean probability of the true identity (1 / N: chance)</p>"
        )
        sections.append(_png_section(run_dir, IDENTITY_PNG, plots.identity_curves_png(log), "identity information"))
    if log.mechanism:
        sections.append("<h2>The teacher's push on the logits (fixed batch, per epoch)</h2>")
        sections.append(f'<p class="note">{html.escape(MECHANISM_NOTE)}</p>')
        sections.append(_evaluation_history_rows(log.mechanism))
    return sections


def write_training_report(
    run_dir: Path, metrics: Mapping[str, Mapping[str, Any]], evaluations: Mapping[str, tuple[Any, Any]], config
) -> Path:
    """The trainer's ``on_evaluation``: ``report.html`` with ranked lists of a fixed sample of each target's queries.

    ``evaluations`` maps each target to ``(dataset, TargetEvaluation)``; the sample is drawn with ``train.seed``.
    """
    ranked = {
        name: sample_ranked_queries(
            ev.query_feats, ev.gallery_feats, target.query, target.gallery, seed=config.train.seed
        )
        for name, (target, ev) in evaluations.items()
    }
    return write_report(run_dir, metrics, ranked_samples=ranked)
