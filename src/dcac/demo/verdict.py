"""``dcac demo``'s verdict over seeds: the arms paired by seed, a 95 % t-interval of the mean paired difference,
one plain sentence, and the comparison page (the arms side by side) in the demo folder.

Arms of one seed share the data, the initialisation and the batches, so the seed-to-seed spread (which is large
at this scale: 48 queries per seed) cancels in the paired difference; the t-interval over the seeds' differences
is the honest statement of what N seeds show.
"""

from __future__ import annotations

import html
import math
import statistics
from pathlib import Path

from matplotlib.figure import Figure

from dcac.inference.html_parts import data_uri, html_page
from dcac.inference.plots import _png_bytes, cmc_plot_png
from dcac.storage.checkpoint import write_text_atomic

COMPARISON_HTML = "comparison.html"
#: The verdict's metrics, as (key, name).
VERDICT_METRICS = (("mAP", "mAP"), ("rank1", "R1"))
#: The mechanism measurements shown per arm, as (key, description).
MECHANISM_KEYS = (
    ("cond_gain", "condition gain 1 - L(c)/L(null)"),
    ("grad_ratio", "|dL_diff/dz| / |dL_id/dz|"),
    ("grad_cosine", "cos(-dL_diff/dz, onehot(y) - p)"),
    ("loss_diff", "L_diff (fixed batch)"),
    ("p_entropy", "entropy of p (nats)"),
    ("p_true", "p(true id)"),
)


def t_quantile(probability: float, dof: int) -> float:
    """The Student t distribution's quantile, by bisection on its CDF (Simpson's rule on the density): scipy is
    not a dependency of the package. Accurate to ~1e-6 for the 0.9-0.999 quantiles used here."""
    if dof < 1 or not 0.5 <= probability < 1:
        raise ValueError(f"need dof >= 1 and 0.5 <= probability < 1, got {dof}, {probability}")
    log_norm = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)

    def cdf(t: float, intervals: int = 4000) -> float:
        h = t / intervals
        density = [math.exp(log_norm - (dof + 1) / 2 * math.log1p((i * h) ** 2 / dof)) for i in range(intervals + 1)]
        weights = [1 if i in (0, intervals) else 4 if i % 2 else 2 for i in range(intervals + 1)]
        return 0.5 + h / 3 * sum(w * d for w, d in zip(weights, density))

    low, high = 0.0, 1.0
    while cdf(high) < probability:
        low, high = high, 2 * high
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < probability else (low, middle)
    return (low + high) / 2


def paired_difference(per_seed: list[dict], arm: str, key: str, reference: str = "baseline") -> dict:
    """``arm - reference`` in ``key`` per seed, their mean and (2 seeds or more) the 95 % t-interval of the mean."""
    differences = [s[arm][key] - s[reference][key] for s in per_seed]
    mean = statistics.fmean(differences)
    result: dict = {"differences": differences, "mean": mean, "low": None, "high": None}
    if len(differences) > 1:
        half = t_quantile(0.975, len(differences) - 1) * statistics.stdev(differences) / math.sqrt(len(differences))
        result.update(low=mean - half, high=mean + half)
    return result


def verdict(difference: dict, arm_name: str = "DCAC") -> str:
    """The plain sentence: ahead / behind / not distinguishable, or that one seed cannot decide."""
    seeds = len(difference["differences"])
    if seeds == 1:
        return f"one seed cannot decide whether {arm_name} is ahead of the Baseline (run --seeds 5)"
    if difference["low"] > 0:
        return f"{arm_name} ahead of the Baseline at {seeds} seeds"
    if difference["high"] < 0:
        return f"{arm_name} behind the Baseline at {seeds} seeds"
    return f"{arm_name} not distinguishable from the Baseline at {seeds} seeds"


def paired_lines(summary: dict) -> list[str]:
    """Per teacher arm and metric: the mean paired difference, its interval and the verdict sentence."""
    lines = []
    for arm in summary["arms"][1:]:
        name = "DCAC" if arm == "dcac" else arm
        for key, metric in VERDICT_METRICS:
            difference = summary["paired"][arm][key]
            interval = (
                f"95 % t-interval {difference['low']:+.1f} .. {difference['high']:+.1f}"
                if difference["low"] is not None
                else "no interval from one seed"
            )
            lines.append(
                f"{name} - Baseline, {metric}: {difference['mean']:+.1f} ({interval}; per seed "
                + ", ".join(f"{d:+.1f}" for d in difference["differences"])
                + f"): {verdict(difference, name)}"
            )
    return lines


def write_comparison_page(out: Path, summary: dict, labels: dict[str, str], mechanism: dict[str, list]) -> Path:
    """``comparison.html``: the arms' metrics with the paired intervals, their CMC curves (mean over seeds) and the
    mechanism measurements per epoch (mean over seeds); ``mechanism`` maps each arm to its per-seed logs."""
    body = [
        f"<p>unseen domain {html.escape(summary['per_seed'][0]['target'])}, seeds "
        f"{', '.join(str(s) for s in summary['seeds'])}; each arm's own report: "
        + ", ".join(f'<a href="{arm}/report.html">{html.escape(labels[arm])}</a>' for arm in summary["arms"])
        + "</p>",
        "<h2>Metrics (mean ± std over seeds)</h2>",
        _metrics_table(summary, labels),
        "<h2>Paired by seed</h2>",
        "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in paired_lines(summary)) + "</ul>",
        "<h2>CMC (mean over seeds)</h2>",
        f'<img alt="CMC" src="{data_uri(cmc_plot_png(_mean_cmc(summary, labels), max_rank=20), "image/png")}">',
        "<h2>Mechanism (fixed training batch, per epoch, mean over seeds)</h2>",
        f'<img alt="mechanism" src="{data_uri(_mechanism_png(mechanism, labels), "image/png")}">',
    ]
    path = out / COMPARISON_HTML
    write_text_atomic(path, html_page("dcac demo: the arms side by side", "\n".join(body)))
    return path


def _metrics_table(summary: dict, labels: dict[str, str]) -> str:
    keys = ["mAP", "rank1", "rank5", "train_acc", *(k for k, _ in MECHANISM_KEYS)]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in ["arm", *keys])
    rows = []
    for arm in summary["arms"]:
        mean, std = summary["mean"][arm], summary["std"][arm]
        cells = [_cell(mean.get(k), std.get(k)) for k in keys]
        rows.append(f"<tr><td>{html.escape(labels[arm])}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f'<table class="metrics"><tr>{head}</tr>{"".join(rows)}</table>'


def _cell(mean: float | None, std: float | None) -> str:
    if mean is None:
        return ""
    style = ".1f" if abs(mean) >= 10 else ".3g"  # the gradient ratio can be a fraction of a percent
    return f"{mean:{style}}" + (f" ± {std:{style}}" if std is not None else "")


def _mean_cmc(summary: dict, labels: dict[str, str]) -> dict[str, list[float]]:
    curves = {}
    for arm in summary["arms"]:
        per_seed = [s["cmc"][arm] for s in summary["per_seed"]]
        curves[labels[arm]] = [statistics.fmean(values) for values in zip(*per_seed)]
    return curves


def _mechanism_png(mechanism: dict[str, list], labels: dict[str, str]) -> bytes:
    figure = Figure(figsize=(4.2 * 3, 3.4 * 2), layout="constrained")
    colours = {arm: f"C{i}" for i, arm in enumerate(mechanism)}  # one colour per arm in every panel
    for column, (key, title) in enumerate(MECHANISM_KEYS, start=1):
        axes = figure.add_subplot(2, 3, column)
        for arm, logs in mechanism.items():
            by_epoch: dict[int, list[float]] = {}
            for rows in logs:
                for row in rows:
                    if key in row:
                        by_epoch.setdefault(int(row["epoch"]), []).append(row[key])
            if by_epoch:
                epochs = sorted(by_epoch)
                axes.plot(
                    epochs,
                    [statistics.fmean(by_epoch[e]) for e in epochs],
                    marker=".",
                    label=labels[arm],
                    color=colours[arm],
                )
        axes.set_title(title, fontsize=9)
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        if key == "p_entropy":  # every arm has this panel's curve
            axes.legend(fontsize=7, loc="best")
    return _png_bytes(figure)
