"""Calibration: the expected calibration error, streamed, and temperature scaling.

ECE uses 15 equal-width bins of the confidence (the max softmax probability) over valid
pixels: ``sum_b n_b / N * |accuracy_b - confidence_b|``; MCE is the largest such gap.
Only per-bin counts and sums are kept, so a split of any size costs 45 numbers.

``rsseg calibrate`` fits one temperature T on a split (minimum NLL of ``softmax(z / T)`` over
at most ``MAX_PIXELS`` uniformly sampled pixels) and stores it in a new checkpoint; the
predictor divides logits by T before the softmax, which leaves the argmax unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsseg.classes import IGNORE_INDEX
from rsseg.errors import RsSegError

N_BINS = 15
MAX_PIXELS = 2_000_000


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


@dataclass
class CalibrationResult:
    temperature: float
    ece_before: float
    ece_after: float
    pixels: int
    checkpoint: Path


def calibrate(checkpoint: Path, *, split: str = "val", out: Path | None = None, in_place: bool = False,
              max_pixels: int = MAX_PIXELS, seed: int = 0) -> CalibrationResult:
    """Fit T on ``split`` and write it into ``out`` (default ``<stem>-calibrated.ckpt``)."""
    import torch

    from rsseg.checkpoint import load_predictor
    from rsseg.io import atomic_path
    from rsseg.safe_load import read_lightning_checkpoint

    checkpoint = Path(checkpoint)
    target = (checkpoint if in_place else Path(out) if out
              else checkpoint.with_name(f"{checkpoint.stem}-calibrated.ckpt"))
    predictor = load_predictor(checkpoint)
    z, labels = sample_logits(predictor, checkpoint, split, max_pixels, seed)
    t = fit_temperature(z, labels)
    before = ece_of(z, labels, predictor.temperature)
    after = ece_of(z, labels, t)
    ckpt = read_lightning_checkpoint(checkpoint)
    ckpt["hyper_parameters"]["temperature"] = float(t)
    try:
        with atomic_path(target) as tmp:
            torch.save(ckpt, tmp)
    except OSError as exc:
        raise RsSegError(f"cannot write {target}: {exc.strerror or exc}") from None
    return CalibrationResult(t, before, after, len(labels), target)


def sample_logits(predictor, checkpoint: Path, split: str, max_pixels: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) float32 logits and (N,) labels of up to ``max_pixels`` labelled pixels of ``split``,
    each kept with the same probability (whole scenes, Border Correction, as ``predict``)."""
    from rsseg.data.rasters import open_raster
    from rsseg.data.sources import get_source
    from rsseg.evaluate import _read_mask
    from rsseg.infer.reader import read_image

    cfg = predictor.config
    source = get_source(cfg.data)
    source.prepare(progress=False)
    scenes = source.scenes(split)
    if not scenes:
        raise RsSegError(f"{checkpoint}: the {split} split of {cfg.data.root} has no scenes to calibrate on")
    total = 0
    for scene in scenes:
        with open_raster(scene.image) as src:
            total += src.height * src.width
    rate = min(1.0, max_pixels / max(total, 1))
    rng = np.random.default_rng(seed)
    zs, ys = [], []
    k = predictor.classes.num_classes
    for scene in scenes:
        image, _ = read_image(scene.image)
        mask = _read_mask(source, scene, image.shape[1:])
        for y0, y1, classes, logits in logit_rows(predictor, image):
            m = mask[y0:y1]
            keep = (m != IGNORE_INDEX) & (m < k) & (classes != IGNORE_INDEX) & (rng.random(m.shape) < rate)
            zs.append(logits[:, keep].T.astype(np.float32))
            ys.append(m[keep].astype(np.int64))
    z, y = np.concatenate(zs), np.concatenate(ys)
    if len(y) == 0:
        raise RsSegError(f"{checkpoint}: no labelled pixels in the {split} split of {cfg.data.root} to calibrate on")
    if len(y) > max_pixels:
        pick = rng.choice(len(y), max_pixels, replace=False)
        z, y = z[pick], y[pick]
    return z, y


def logit_rows(predictor, image: np.ndarray):
    """(y0, y1, classes, (K, n, w) logits) rows of a scene, as ``predict`` stitches them."""
    from rsseg.infer.engine import WindowEngine, check_bands
    from rsseg.infer.options import PredictOptions
    from rsseg.infer.reader import ArraySource, StripReader
    from rsseg.infer.stitch import HardStitcher

    class LogitStitcher(HardStitcher):
        def _predict(self, x):
            e = self.engine
            logits = e.crop(e.logits(x))
            return e.ops.classes(logits), e.ops.numpy(logits)

    options = PredictOptions()
    check_bands(predictor, image.shape[0])
    grid = options.grid(predictor, *image.shape[1:])
    stitcher = LogitStitcher(WindowEngine(predictor, grid), probabilities=True)
    reader = StripReader(ArraySource(image), grid)
    for i in range(grid.rows):
        yield from stitcher.add(i, reader.strip(i))
