"""Reliability of confidences: the expected (and maximum) calibration error, streamed, and
the softmax/NLL/temperature maths behind ``rsseg calibrate`` (``rsseg.calibration``).

ECE uses 15 equal-width bins of the confidence (the max softmax probability) over valid
pixels: ``sum_b n_b / N * |accuracy_b - confidence_b|``; MCE is the largest such gap.
Only per-bin counts and sums are kept, so a split of any size costs 45 numbers.
"""

from __future__ import annotations

import math

import numpy as np

from rsseg.classes import IGNORE_INDEX

N_BINS = 15


class ReliabilityBins:
    """Per-bin pixel counts and sums of confidence and correctness (equal-width bins)."""

    def __init__(self, bins: int = N_BINS) -> None:
        self.bins = bins
        self.count = np.zeros(bins, np.int64)
        self.conf = np.zeros(bins, np.float64)
        self.correct = np.zeros(bins, np.float64)

    def add(self, conf: np.ndarray, correct: np.ndarray) -> None:
        """Confidences in [0, 1] and whether each pixel's class was right (same shapes)."""
        conf = np.asarray(conf, np.float64).ravel()
        idx = np.minimum((conf * self.bins).astype(np.int64), self.bins - 1)  # 1.0 -> last bin
        self.count += np.bincount(idx, minlength=self.bins)
        self.conf += np.bincount(idx, weights=conf, minlength=self.bins)
        self.correct += np.bincount(idx, weights=np.asarray(correct, np.float64).ravel(), minlength=self.bins)

    def add_rows(self, conf: np.ndarray, pred: np.ndarray, target: np.ndarray, num_classes: int) -> None:
        """Rows of a scene: pixels with a label and a prediction count."""
        valid = (target != IGNORE_INDEX) & (target < num_classes) & (pred != IGNORE_INDEX)
        self.add(conf[valid], pred[valid] == target[valid])

    def _gaps(self) -> tuple[np.ndarray, np.ndarray]:
        seen = self.count > 0
        n = np.maximum(self.count, 1)
        return seen, np.abs(self.correct / n - self.conf / n)

    def ece(self) -> float | None:
        total = int(self.count.sum())
        if total == 0:
            return None
        seen, gap = self._gaps()
        return float((self.count[seen] * gap[seen]).sum() / total)

    def mce(self) -> float | None:
        seen, gap = self._gaps()
        return float(gap[seen].max()) if seen.any() else None

    def to_dict(self) -> dict:
        n = np.maximum(self.count, 1)
        seen = self.count > 0
        return {"ece": self.ece(), "mce": self.mce(), "bins": self.bins, "count": self.count.tolist(),
                "accuracy": [float(a) if s else None for a, s in zip(self.correct / n, seen, strict=True)],
                "confidence": [float(c) if s else None for c, s in zip(self.conf / n, seen, strict=True)]}


def softmax(z: np.ndarray, t: float = 1.0) -> np.ndarray:
    """Row-wise softmax of (N, K) logits at temperature ``t``."""
    z = np.asarray(z, np.float64) / t
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def nll(z: np.ndarray, labels: np.ndarray, t: float) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(z / t)``."""
    s = np.asarray(z, np.float64) / t
    m = s.max(axis=1)
    lse = m + np.log(np.exp(s - m[:, None]).sum(axis=1))
    return float((lse - s[np.arange(len(labels)), labels]).mean())


def fit_temperature(z: np.ndarray, labels: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """T minimising ``nll`` by golden-section search on log T (NLL is convex in 1/T)."""
    a, b = math.log(lo), math.log(hi)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(z, labels, math.exp(c)), nll(z, labels, math.exp(d))
    while b - a > 1e-4:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(z, labels, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(z, labels, math.exp(d))
    return math.exp((a + b) / 2)


def ece_of(z: np.ndarray, labels: np.ndarray, t: float) -> float:
    p = softmax(z, t)
    bins = ReliabilityBins()
    bins.add(p.max(axis=1), p.argmax(axis=1) == labels)
    return bins.ece()


