"""PNG plots for run reports: CMC curves, training curves and the identity information in the condition, drawn with matplotlib's Agg canvas.

The figures are built with ``matplotlib.figure.Figure`` and ``FigureCanvasAgg`` directly, never through
``pyplot``: no global backend switch, no GUI, safe to call from a training loop or a thread.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dcac.inference.training_log import TrainingLog


def _png_bytes(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def cmc_plot_png(cmc_by_target: Mapping[str, Sequence[float]], max_rank: int = 50) -> bytes:
    """CMC curves (one per target), ``cmc[r-1]`` = fraction of queries matched within rank r, in percent."""
    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    for target, cmc in cmc_by_target.items():
        values = [100.0 * float(v) for v in list(cmc)[:max_rank]]
        axes.plot(range(1, len(values) + 1), values, marker=".", label=target)
    axes.set_xlabel("rank")
    axes.set_ylabel("matching rate (%)")
    axes.set_title("CMC")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return _png_bytes(figure)


def training_curves_png(log: TrainingLog) -> bytes:
    """Loss curves (left) and the training ID accuracy (right, when logged) over the logged steps."""
    panels = 2 if log.accuracy else 1
    figure = Figure(figsize=(6 * panels, 4))
    loss_axes = figure.add_subplot(1, panels, 1)
    for name, values in log.losses.items():
        _plot_known(loss_axes, log.steps, values, label=name)
    loss_axes.set_xlabel(log.step_label)
    loss_axes.set_ylabel("loss")
    logged = [v for values in log.losses.values() for v in values if v is not None]
    # Loss terms of very different size (PCL at T=0.01 vs the ID loss) stay readable on a log axis.
    if logged and min(logged) > 0 and max(logged) / min(logged) > 50:
        loss_axes.set_yscale("log")
    loss_axes.set_title("training losses")
    loss_axes.grid(alpha=0.3)
    loss_axes.legend(loc="upper right")
    if log.accuracy:
        acc_axes = figure.add_subplot(1, panels, 2)
        _plot_known(acc_axes, log.steps, log.accuracy, color="tab:green")
        acc_axes.set_xlabel(log.step_label)
        acc_axes.set_ylabel("accuracy")
        acc_axes.set_title("training ID accuracy")
        acc_axes.grid(alpha=0.3)
    return _png_bytes(figure)


def _plot_known(axes, steps: Sequence[float], values: Sequence[float | None], **style) -> None:
    """Plot the points where a value was logged (not every key is on every line)."""
    points = [(s, v) for s, v in zip(steps, values) if v is not None]
    axes.plot([p[0] for p in points], [p[1] for p in points], **style)


# The per-epoch identity information in the condition (see dcac.models.identity_information): mean entropy
# of p, mean probability of the true identity (next to the training accuracy) and, with a teacher, L_diff.
IDENTITY_KEYS = ("p_entropy", "p_true")


def has_identity_curves(log: TrainingLog) -> bool:
    return any(key in row for row in log.epoch_means for key in IDENTITY_KEYS)


def identity_curves_png(log: TrainingLog) -> bytes:
    rows = log.epoch_means
    epochs = [row.get("epoch") for row in rows]
    panels = [
        ("p_entropy", "mean entropy of p (nats)", ("p_entropy",)),
        ("p_true / accuracy", "mean over the epoch", ("p_true", "acc")),
    ]
    if any("loss_diff" in row for row in rows):
        panels.append(("diffusion loss", "mean L_diff", ("loss_diff",)))
    figure = Figure(figsize=(4.5 * len(panels), 3.5))
    for column, (title, ylabel, keys) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), column)
        for key in keys:
            points = [(e, row[key]) for e, row in zip(epochs, rows) if key in row and e is not None]
            axes.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=key)
        axes.set_xlabel("epoch")
        axes.set_ylabel(ylabel)
        axes.set_title(title)
        axes.grid(alpha=0.3)
        if len(keys) > 1:
            axes.legend(loc="best")
    return _png_bytes(figure)
