"""Gallery PNG of a search (seed 000 Fig. 19): the query and its top-k, images over masks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsseg.classes import ClassTable
from rsseg.io import atomic_path


@dataclass
class Panel:
    """One column of the gallery: title, RGB chip (None: source image unavailable), mask."""

    title: str
    rgb: np.ndarray | None
    mask: np.ndarray


def save_gallery(path: Path, panels: list[Panel], classes: ClassTable, suptitle: str = "") -> Path:
    """Write a 2-row gallery (images, colourised masks) with one column per panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    n = len(panels)
    fig = Figure(figsize=(2.2 * n, 5.2), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, n, squeeze=False)
    for j, p in enumerate(panels):
        top, bottom = axes[0, j], axes[1, j]
        if p.rgb is not None:
            top.imshow(p.rgb)
        else:
            top.text(0.5, 0.5, "image\nnot found", ha="center", va="center", fontsize=8)
        top.set_title(p.title, fontsize=7)
        bottom.imshow(classes.colorize(p.mask), interpolation="nearest")
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
        if j == 0:
            for spine in (*top.spines.values(), *bottom.spines.values()):
                spine.set_edgecolor("red")
                spine.set_linewidth(2)
    present = sorted({int(v) for p in panels for v in np.unique(p.mask) if v < classes.num_classes})
    handles = [Patch(color=np.asarray(classes.colors[c]) / 255, label=classes.names[c]) for c in present]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=7, frameon=False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
