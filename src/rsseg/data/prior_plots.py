"""Class-prior bar charts (seed 000 Figs. 2-4): pixel share per class, in the class colours.

Written with matplotlib's Agg canvas (no GUI backend) and saved atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rsseg.classes import ClassTable
from rsseg.data.balance import class_entropy
from rsseg.errors import RsSegError
from rsseg.io import atomic_path


def _shown(counts: np.ndarray | Sequence[float], classes: ClassTable,
           ignore_shown: bool) -> tuple[list[int], np.ndarray]:
    """(class indices drawn, their share of the drawn pixels)."""
    c = np.asarray(counts, dtype=np.float64)
    if c.shape != (classes.num_classes,) or (c < 0).any() or not np.isfinite(c).all():
        raise RsSegError(f"need {classes.num_classes} class pixel counts >= 0, got shape {c.shape}")
    idx = list(range(classes.num_classes)) if ignore_shown else classes.evaluated
    total = c[idx].sum()
    if total <= 0:
        raise RsSegError("cannot plot class priors: no pixel in the shown classes")
    return idx, c[idx] / total


def _figure(n_bars: int, width_per_bar: float = 0.45):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 1.5 + width_per_bar * n_bars), 4.5), dpi=120,
                 layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _label(classes: ClassTable, i: int) -> str:
    return classes.names[i] + (" (ignored)" if i in classes.ignore else "")


def _colour(classes: ClassTable, i: int) -> tuple[float, float, float]:
    r, g, b = classes.colors[i]
    return (r / 255.0, g / 255.0, b / 255.0)


def _finish(fig, ax, names: list[str], path: Path, title: str) -> Path:
    ax.set_xticks(range(len(names)), labels=names, rotation=45, ha="right",
                  rotation_mode="anchor")
    ax.set_ylabel("share of pixels (%)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def plot_class_priors(
    counts: np.ndarray | Sequence[float],
    classes: ClassTable,
    path: Path,
    title: str | None = None,
    ignore_shown: bool = True,
) -> Path:
    """Bar chart of each class's share of the pixels (PNG at ``path``; returns the path).

    ``ignore_shown=True`` draws every class over all pixels (seed Fig. 2);
    ``False`` leaves the ignored classes out and renormalises (Fig. 3). The entropy of the
    shown distribution is given in the title.
    """
    idx, share = _shown(counts, classes, ignore_shown)
    fig, ax = _figure(len(idx))
    colours = [_colour(classes, i) for i in idx]
    bars = ax.bar(range(len(idx)), 100.0 * share, color=colours, edgecolor="black",
                  linewidth=0.6)
    for bar, i in zip(bars, idx):
        if i in classes.ignore:
            bar.set_hatch("//")
    ax.bar_label(bars, labels=[f"{100 * s:.1f}" for s in share], fontsize=7, padding=2)
    ax.margins(y=0.12)
    h = float(class_entropy(share))
    head = title or ("Class priors" + ("" if ignore_shown else " (ignored classes excluded)"))
    return _finish(fig, ax, [_label(classes, i) for i in idx], path,
                   f"{head}\nentropy {h:.3f} nats (max {np.log(len(idx)):.3f})")


def plot_priors_before_after(
    before_counts: np.ndarray | Sequence[float],
    after_counts: np.ndarray | Sequence[float],
    classes: ClassTable,
    path: Path,
    title: str | None = None,
    ignore_shown: bool = False,
) -> Path:
    """Class shares before (light, hatched) and after (solid) balancing, side by side per
    class (seed Figs. 3 and 4 in one chart); ignored classes are left out by default."""
    idx, before = _shown(before_counts, classes, ignore_shown)
    _, after = _shown(after_counts, classes, ignore_shown)
    from matplotlib.patches import Patch

    fig, ax = _figure(len(idx), width_per_bar=0.6)
    x = np.arange(len(idx))
    colours = [_colour(classes, i) for i in idx]
    h_b, h_a = float(class_entropy(before)), float(class_entropy(after))
    ax.bar(x - 0.2, 100.0 * before, width=0.4, color=colours, alpha=0.45, hatch="//",
           edgecolor="black", linewidth=0.6)
    ax.bar(x + 0.2, 100.0 * after, width=0.4, color=colours, edgecolor="black",
           linewidth=0.6)
    ax.legend(handles=[  # neutral swatches: the bars themselves carry the class colours
        Patch(facecolor="0.85", hatch="//", edgecolor="black",
              label=f"before (entropy {h_b:.3f} nats)"),
        Patch(facecolor="0.45", edgecolor="black", label=f"after (entropy {h_a:.3f} nats)"),
    ], fontsize=8)
    return _finish(fig, ax, [_label(classes, i) for i in idx], path,
                   title or "Class priors before and after balancing")
