"""The report's per-epoch view of the identity information in the condition (see dcac.models.identity_information).

Three panels over the epochs: the mean entropy of p, the mean probability p gives the true identity (next to
the training ID accuracy) and, for runs with a teacher, the mean diffusion loss.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from dcac.inference.plots import _png_bytes
from dcac.inference.training_log import TrainingLog

IDENTITY_KEYS = ("p_entropy", "p_true")


def has_identity_curves(log: TrainingLog) -> bool:
    return any(key in row for row in log.epoch_means for key in IDENTITY_KEYS)


def identity_curves_png(log: TrainingLog) -> bytes:
    rows = log.epoch_means
    epochs = [row.get("epoch") for row in rows]
    panels = [("p_entropy", "mean entropy of p (nats)", ("p_entropy",)),
              ("p_true / accuracy", "mean over the epoch", ("p_true", "acc"))]
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
