"""Figures of the run report, returned as PNG bytes so the page can inline them."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rsseg.classes import ClassTable


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _float(value: str | None) -> float | None:
    try:
        out = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return None if out is None or math.isnan(out) else out


def read_epoch_history(metrics_csv: Path) -> dict[str, list[tuple[int, float]]]:
    """Per-epoch series from Lightning's CSV log: {column: [(epoch, value), ...]}."""
    series: dict[str, dict[int, float]] = {}
    if not metrics_csv.exists():
        return {}
    with metrics_csv.open(newline="") as fh:
        for row in csv.DictReader(fh):
            epoch = _float(row.get("epoch"))
            if epoch is None:
                continue
            for key in ("train_loss_epoch", "val_loss", "val_miou", "val_oa", "val_mf1"):
                value = _float(row.get(key))
                if value is not None:
                    series.setdefault(key, {})[int(epoch)] = value
    return {k: sorted(v.items()) for k, v in series.items()}


def curves_png(history: dict[str, list[tuple[int, float]]]) -> bytes | None:
    """Loss (train, validation) and validation mIoU per epoch, side by side."""
    if not history:
        return None
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    loss_ax, miou_ax = fig.subplots(1, 2)
    for key, label in (("train_loss_epoch", "train"), ("val_loss", "validation")):
        if key in history:
            x, y = zip(*history[key], strict=True)
            loss_ax.plot(np.asarray(x) + 1, y, marker="o", label=label)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    loss_ax.legend()
    for key, label in (("val_miou", "mIoU"), ("val_mf1", "mF1"), ("val_oa", "OA")):
        if key in history:
            x, y = zip(*history[key], strict=True)
            miou_ax.plot(np.asarray(x) + 1, y, marker="o", label=label)
    miou_ax.set(xlabel="epoch", ylabel="score", title="Validation", ylim=(0, 1))
    if miou_ax.lines:
        miou_ax.legend()
    else:  # data.split.val: [] trains without validation
        miou_ax.text(0.5, 0.5, "no validation split", ha="center", va="center", transform=miou_ax.transAxes)
    for ax in (loss_ax, miou_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return to_png(fig)


def _hex(color: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def iou_bars_png(metrics: dict, classes: ClassTable) -> bytes:
    """Per-class IoU bars in the class colours, with the mIoU as a dashed line."""
    names = [n for n in metrics["per_class"] if metrics["per_class"][n]["iou"] is not None]
    values = [metrics["per_class"][n]["iou"] for n in names]
    colors = [_hex(classes.colors[classes.names.index(n)]) for n in names]
    fig = Figure(figsize=(max(5.0, 0.7 * len(names) + 2), 3.6), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(names, values, color=colors, edgecolor="black", linewidth=0.5)
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=8)
    if metrics.get("miou") is not None:
        ax.axhline(metrics["miou"], color="black", linestyle="--", linewidth=1,
                   label=f"mIoU {metrics['miou']:.3f}")
        ax.legend(loc="upper right")
    ax.set(ylim=(0, 1.08), ylabel="IoU", title="Per-class IoU")
    ax.tick_params(axis="x", rotation=30)
    return to_png(fig)


def priors_png(counts: list[int], classes: ClassTable) -> bytes:
    """Class shares of the training pixels, with and without the ignored classes."""
    counts_arr = np.asarray(counts, dtype=np.float64)
    fig = Figure(figsize=(max(6.0, 0.9 * len(counts_arr) + 2), 3.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=False)
    evaluated = [i for i in range(classes.num_classes) if i not in classes.ignore]
    for ax, idx, title in ((axes[0], list(range(classes.num_classes)), "all labelled pixels"),
                           (axes[1], evaluated, "without ignored classes")):
        total = counts_arr[idx].sum()
        shares = counts_arr[idx] / total if total > 0 else counts_arr[idx]
        bars = ax.bar([classes.names[i] for i in idx], shares * 100,
                      color=[_hex(classes.colors[i]) for i in idx], edgecolor="black", linewidth=0.5)
        ax.bar_label(bars, labels=[f"{s * 100:.1f}" for s in shares], fontsize=7)
        ax.set(ylabel="% of pixels", title=title)
        ax.tick_params(axis="x", rotation=40)
    return to_png(fig)


def iou_boxplot_png(per_class: dict[str, list[float]], classes_colors: dict[str, str]) -> bytes:
    """Distribution of each class's IoU over the compared runs (seed 000 Fig. 18)."""
    names = [n for n, v in per_class.items() if v]
    fig = Figure(figsize=(max(6.0, 0.8 * len(names) + 2), 3.8), layout="constrained")
    ax = fig.subplots()
    if names:
        box = ax.boxplot([per_class[n] for n in names], patch_artist=True)
        ax.set_xticks(range(1, len(names) + 1), labels=names, rotation=30)
        for patch, name in zip(box["boxes"], names, strict=True):
            patch.set_facecolor(classes_colors.get(name, "#cccccc"))
    ax.set(ylim=(0, 1), ylabel="IoU", title="Per-class IoU across runs")
    ax.grid(axis="y", alpha=0.3)
    return to_png(fig)


def legend_html(classes: ClassTable) -> str:
    items = []
    for i, (name, color) in enumerate(zip(classes.names, classes.colors, strict=True)):
        note = " (ignored)" if i in classes.ignore else ""
        items.append(f'<span class="sw" style="background:{_hex(color)}"></span>{name}{note}')
    return '<div class="legend">' + " ".join(items) + "</div>"


def reliability_png(calibration: dict) -> bytes:
    """Reliability diagram (accuracy against confidence per bin, ECE in the title) over the
    pixel count per bin: ``rsseg.reliability.ReliabilityBins.to_dict()``."""
    n = calibration["bins"]
    edges = np.linspace(0, 1, n + 1)
    centres, width = (edges[:-1] + edges[1:]) / 2, 1 / n
    acc = np.array([np.nan if a is None else a for a in calibration["accuracy"]])
    fig = Figure(figsize=(5, 5.4), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.bar(centres, np.nan_to_num(acc), width=width, edgecolor="black", linewidth=0.5, label="accuracy")
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ece = calibration.get("ece")
    top.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
            title=f"ECE {ece:.4f}, MCE {calibration['mce']:.4f}" if ece is not None else "no valid pixels")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centres, calibration["count"], width=width, color="grey", edgecolor="black", linewidth=0.5)
    bottom.set(xlabel="confidence (max probability)", ylabel="pixels")
    return to_png(fig)
