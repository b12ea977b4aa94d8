"""Segmentation metrics from an exact confusion matrix.

The confusion matrix ``M`` has ground truth as rows and prediction as columns; ``M[i, j]``
counts pixels labelled ``i`` and predicted ``j``, accumulated in int64 over a whole split.
Pixels whose label is ``ignore_index`` (255, "no label") are never counted.

Project definition of the metrics (``compute_metrics``):

* Ignored classes (``ClassTable.ignore``): their ground-truth rows are dropped entirely, so
  pixels labelled with an ignored class count nowhere. Their prediction columns stay: a pixel
  of an evaluated class predicted as an ignored class is a false negative of its true class
  (it lowers recall and IoU and counts in OA's denominator). Ignored classes appear neither
  in ``per_class`` nor in the means.
* For an evaluated class ``i`` (rows restricted to evaluated classes)::

      TP = M[i, i]    FN = sum_j M[i, j] - TP    FP = sum_{r evaluated} M[r, i] - TP
      IoU = TP / (TP + FP + FN)      precision = TP / (TP + FP)
      recall = TP / (TP + FN)        F1 = 2PR / (P + R) = 2TP / (2TP + FP + FN)
      support = sum_j M[i, j]

* A class absent from both ground truth and prediction (TP + FP + FN == 0) gets ``None`` for
  all four values and is left out of the means. Otherwise a zero denominator gives 0.0:
  precision of a present class never predicted, recall of a predicted class absent from the
  ground truth, F1 when P + R == 0.
* mIoU, mprecision, mrecall, mF1 are macro means over evaluated classes with non-null
  values. OA = sum of evaluated diagonal / sum of evaluated rows. With no evaluated pixels at
  all, every aggregate is ``None``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.io import atomic_write_text


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


class ConfusionMatrix:
    """Exact int64 confusion matrix (rows = ground truth, columns = prediction)."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self._m = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    @property
    def matrix(self) -> np.ndarray:
        """A copy of the (K, K) int64 counts."""
        return self._m.copy()

    def reset(self) -> None:
        self._m[:] = 0

    def sum_across(self, reduce: Any) -> None:
        """Replace the counts by their sum over processes; ``reduce``: a sum all-reduce of a
        tensor. Under DDP this keeps mIoU exact over the whole set (no averaged mIoUs)."""
        import torch

        self._m = np.asarray(reduce(torch.from_numpy(self._m.copy())).cpu(), dtype=np.int64)

    def update(self, pred: Any, target: Any) -> None:
        """Add one batch. ``pred`` and ``target``: same-shape integer arrays or tensors."""
        if _is_tensor(pred) or _is_tensor(target):
            self._m += self._count_torch(pred, target)
        else:
            self._m += self._count_numpy(np.asarray(pred), np.asarray(target))

    def _check(self, pred_shape, target_shape, pred_int: bool, target_int: bool) -> None:
        if tuple(pred_shape) != tuple(target_shape):
            raise ValueError(
                f"prediction shape {tuple(pred_shape)} != target shape {tuple(target_shape)}"
            )
        if not (pred_int and target_int):
            raise ValueError("prediction and target must hold integer class indices")

    def _range_error(self, what: str, lo: int, hi: int) -> ValueError:
        return ValueError(
            f"{what} values must lie in [0, {self.num_classes})"
            + (f" or be {self.ignore_index}" if what == "target" else "")
            + f"; found range [{lo}, {hi}]"
        )

    def _count_numpy(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        k = self.num_classes
        self._check(
            pred.shape, target.shape,
            np.issubdtype(pred.dtype, np.integer) or pred.dtype == bool,
            np.issubdtype(target.dtype, np.integer) or target.dtype == bool,
        )
        pred = pred.reshape(-1).astype(np.int64, copy=False)
        target = target.reshape(-1).astype(np.int64, copy=False)
        if pred.size and (pred.min() < 0 or pred.max() >= k):
            raise self._range_error("prediction", int(pred.min()), int(pred.max()))
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        if target.size and (target.min() < 0 or target.max() >= k):
            raise self._range_error("target", int(target.min()), int(target.max()))
        counts = np.bincount(target * k + pred, minlength=k * k)
        return counts.reshape(k, k).astype(np.int64, copy=False)

    def _count_torch(self, pred: Any, target: Any) -> np.ndarray:
        import torch

        k = self.num_classes
        device = pred.device if isinstance(pred, torch.Tensor) else target.device
        pred = torch.as_tensor(pred, device=device)
        target = torch.as_tensor(target, device=device)
        self._check(
            pred.shape, target.shape,
            not (pred.is_floating_point() or pred.is_complex()),
            not (target.is_floating_point() or target.is_complex()),
        )
        pred = pred.reshape(-1).to(torch.int64)
        target = target.reshape(-1).to(torch.int64)
        if pred.numel():
            lo, hi = int(pred.min()), int(pred.max())
            if lo < 0 or hi >= k:
                raise self._range_error("prediction", lo, hi)
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        if target.numel():
            lo, hi = int(target.min()), int(target.max())
            if lo < 0 or hi >= k:
                raise self._range_error("target", lo, hi)
        counts = torch.bincount(target * k + pred, minlength=k * k)
        return counts.reshape(k, k).cpu().numpy().astype(np.int64, copy=False)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add ``other``'s counts into this matrix (same class count); returns ``self``."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"cannot merge {type(other).__name__} into ConfusionMatrix")
        if other.num_classes != self.num_classes:
            raise ValueError(
                f"cannot merge confusion matrices of {self.num_classes} and "
                f"{other.num_classes} classes"
            )
        self._m += other._m
        return self

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        return self.merge(other)

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, pixels={int(self._m.sum())})"


def _ratio(num: int, den: int) -> float:
    return float(num) / float(den) if den else 0.0


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(sum(vals) / len(vals)) if vals else None


def compute_metrics(matrix: np.ndarray, classes: ClassTable) -> dict:
    """JSON-ready metrics dict from a (K, K) confusion matrix; see the module docstring."""
    m = np.asarray(matrix)
    k = classes.num_classes
    if m.shape != (k, k):
        raise ValueError(f"confusion matrix shape {m.shape} does not match {k} classes")
    m = m.astype(np.int64)
    ev = classes.evaluated
    rows = m[ev]  # evaluated ground-truth rows, all prediction columns
    per_class: dict[str, dict] = {}
    for i in ev:
        tp = int(m[i, i])
        support = int(m[i].sum())
        fn = support - tp
        fp = int(rows[:, i].sum()) - tp
        if tp + fp + fn == 0:
            per_class[classes.names[i]] = {
                "iou": None, "precision": None, "recall": None, "f1": None, "support": 0,
            }
            continue
        p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        per_class[classes.names[i]] = {
            "iou": _ratio(tp, tp + fp + fn),
            "precision": p,
            "recall": r,
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "support": support,
        }
    total = int(rows.sum())
    if total == 0:
        miou = oa = mp = mr = mf1 = None
    else:
        vals = list(per_class.values())
        miou = _mean([v["iou"] for v in vals])
        mp = _mean([v["precision"] for v in vals])
        mr = _mean([v["recall"] for v in vals])
        mf1 = _mean([v["f1"] for v in vals])
        oa = float(sum(int(m[i, i]) for i in ev)) / float(total)
    return {
        "miou": miou,
        "oa": oa,
        "mprecision": mp,
        "mrecall": mr,
        "mf1": mf1,
        "per_class": per_class,
        "confusion_matrix": [[int(v) for v in row] for row in m],
        "class_names": list(classes.names),
        "evaluated_classes": [classes.names[i] for i in ev],
        "ignored_classes": [classes.names[i] for i in sorted(set(classes.ignore))],
    }


def save_metrics(metrics: dict, path: Path) -> Path:
    """Write ``metrics`` as indented JSON, atomically. Returns the path."""
    path = Path(path)
    atomic_write_text(path, json.dumps(metrics, indent=2) + "\n")
    return path


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{100.0 * v:.2f}"


def format_metrics_table(metrics: dict, title: str | None = None):
    """A ``rich.table.Table``: one row per evaluated class (values in %) plus the means."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("class")
    for col in ("IoU", "P", "R", "F1", "support"):
        table.add_column(col, justify="right")
    for name, v in metrics["per_class"].items():
        table.add_row(
            name, _fmt(v["iou"]), _fmt(v["precision"]), _fmt(v["recall"]), _fmt(v["f1"]),
            f"{v['support']:,}",
        )
    total = sum(v["support"] for v in metrics["per_class"].values())
    table.add_section()
    table.add_row(
        "mean", _fmt(metrics["miou"]), _fmt(metrics["mprecision"]), _fmt(metrics["mrecall"]),
        _fmt(metrics["mf1"]), f"{total:,}", style="bold",
    )
    table.caption = f"OA {_fmt(metrics['oa'])}%  (values in %)"
    return table
