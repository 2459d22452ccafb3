"""Learning-curve figures: one PNG per environment, one line per group with its 95% interval."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

if TYPE_CHECKING:
    from frugal.report.compare import Group

X_LABELS = {"env_step": "environment steps", "update": "updates", "wall_s": "wall time (s)"}


def _count(v: float, _pos=None) -> str:
    """50000 -> 50k, 1500000 -> 1.5M: readable step counts on an axis."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.4g}{suffix}"
    return f"{v:.4g}"


def colours(n: int) -> list:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def plot_env(
    env_id: str, groups: list[Group], metric: str, x: str, path: Path, labels: list[str]
) -> Path:
    """One figure of `groups` (all on `env_id`). `labels` are the group labels of the whole
    comparison: a group keeps its colour in every environment's figure."""
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    styles = ["-", "--", "-."]
    palette = colours(len(labels))
    for g in groups:
        i = labels.index(g.label)
        c = palette[i]
        cv = g.curve
        if cv is None:
            continue
        n = len(g.seeds)
        label = f"{g.label}, {n} seed{'s' if n != 1 else ''}"
        if not cv.complete:
            label += ", partial"
        ls = styles[(i // 20) % len(styles)] if cv.complete else ":"  # > 20 groups: dashes
        if cv.aligned:  # every point is an evaluation of every seed: points joined by lines
            marker = "o" if cv.x.size <= 30 else None
            ax.plot(cv.x, cv.mean, color=c, ls=ls, lw=1.8, marker=marker, ms=3.5, label=label)
            if n > 1:
                ax.fill_between(cv.x, cv.lo, cv.hi, color=c, alpha=0.18, lw=0)
        else:  # seeds evaluated at different x: the mean of step functions is a step function
            ax.plot(cv.x, cv.mean, color=c, ls=ls, lw=1.8, drawstyle="steps-post", label=label)
            if n > 1:
                ax.fill_between(cv.x, cv.lo, cv.hi, color=c, alpha=0.18, lw=0, step="post")
    ax.set_xlabel(X_LABELS[x])
    ax.set_ylabel(f"{metric} (mean over seeds, 95% CI)")
    ax.set_title(f"{env_id} — {metric}")
    ax.grid(True, alpha=0.3)
    if x in ("env_step", "update"):
        ax.xaxis.set_major_formatter(FuncFormatter(_count))
    handles, _ = ax.get_legend_handles_labels()
    if len(handles) > 4:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    elif handles:
        ax.legend(loc="best", fontsize="small")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
