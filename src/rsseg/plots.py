"""Plotting and image-writing helpers. Files are written atomically; no GUI backend is used."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsseg.classes import ClassTable
from rsseg.errors import RsSegError
from rsseg.io import atomic_path


def _confusion_view(matrix: np.ndarray, classes: ClassTable) -> tuple[np.ndarray, list, list]:
    """Row-normalised matrix over evaluated rows; columns: evaluated classes plus ignored
    classes that received predictions. Rows with zero support are NaN."""
    m = np.asarray(matrix, dtype=np.int64)
    k = classes.num_classes
    if m.shape != (k, k):
        raise ValueError(f"confusion matrix shape {m.shape} does not match {k} classes")
    ev = classes.evaluated
    rows = m[ev]
    cols = [j for j in range(k) if j not in classes.ignore or rows[:, j].sum() > 0]
    sub = rows[:, cols].astype(np.float64)
    support = rows.sum(axis=1, keepdims=True).astype(np.float64)  # includes every column
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(support > 0, sub / np.where(support > 0, support, 1.0), np.nan)
    return norm, ev, cols


def plot_confusion_matrix(
    matrix: np.ndarray, classes: ClassTable, path: Path, *, title: str | None = None
) -> Path:
    """Save a row-normalised confusion matrix heat map (PNG) to ``path``; return the path.

    Rows: evaluated classes (ground truth). Columns: evaluated classes plus any ignored class
    that evaluated pixels were predicted as. Cells show the percentage of the row's pixels;
    rows without ground-truth pixels are grey.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    path = Path(path)
    norm, rows, cols = _confusion_view(matrix, classes)
    row_names = [classes.names[i] for i in rows]
    col_names = [
        classes.names[j] + (" (ignored)" if j in classes.ignore else "") for j in cols
    ]
    n_r, n_c = len(rows), len(cols)
    cell = 0.55 if max(n_r, n_c) <= 20 else 0.35
    width = max(5.0, 2.5 + cell * n_c)
    height = max(4.0, 2.2 + cell * n_r)
    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    ax = fig.add_subplot()

    cmap = colormaps["Blues"].with_extremes(bad="lightgrey")
    data = np.ma.masked_invalid(norm * 100.0)
    im = ax.imshow(data, cmap=cmap, vmin=0.0, vmax=100.0, aspect="auto",
                   interpolation="nearest")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("% of ground-truth pixels")

    ax.set_xticks(range(n_c), labels=col_names, rotation=45, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(n_r), labels=row_names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(title or "Confusion matrix (row-normalised)")
    ax.set_xticks(np.arange(n_c + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n_r + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1.0)
    ax.tick_params(which="minor", length=0)

    if max(n_r, n_c) <= 30:
        fontsize = 8 if max(n_r, n_c) <= 12 else 6
        for r in range(n_r):
            for c in range(n_c):
                v = norm[r, c]
                if np.isnan(v):
                    continue  # no ground-truth pixels: grey, no text
                text = f"{100.0 * v:.1f}" if v > 0 else "0"
                color = "white" if v > 0.5 else "black"
                ax.text(c, r, text, ha="center", va="center", color=color,
                        fontsize=fontsize)

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def save_rgb_png(array_hwc_uint8: np.ndarray, path: Path) -> Path:
    """Write an (H, W, 3) or (H, W) uint8 array as a PNG, atomically; return the path."""
    from PIL import Image

    arr = np.asarray(array_hwc_uint8)
    if arr.dtype != np.uint8:
        raise RsSegError(f"PNG image must be uint8, got {arr.dtype}")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise RsSegError(f"PNG image must be (H, W), (H, W, 3) or (H, W, 4); got {arr.shape}")
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="PNG")
    return path
