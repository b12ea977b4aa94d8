"""Strips of window predictions -> finished scene rows, in order.

``HardStitcher`` keeps each window's centre (Border Correction). ``Blender`` instead
cross-fades neighbouring windows over the ``2 * margin`` px around each seam with linear or
cosine weights that sum to one, so it holds back ``2 * margin`` rows until the next strip
has added its share. Both yield ``(y0, y1, classes, probabilities)`` for scene rows
``[y0, y1)``; probabilities are None unless asked for (or needed by TTA/blending).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from rsseg.infer.confidence import confidence as confidence_map
from rsseg.infer.confidence import disagreement as disagreement_map
from rsseg.infer.engine import TorchOps, WindowEngine
from rsseg.infer.reader import Strip
from rsseg.infer.writers import probability_bytes

BLENDS = ("linear", "cosine")
Rows = tuple[int, int, np.ndarray, np.ndarray | None]


def ramp(n: int, overlap: int, kind: str) -> np.ndarray:
    """1-D weights over ``n`` px rising over the first and falling over the last
    ``2 * overlap`` px; a rise and the neighbour's fall sum to exactly one."""
    w = np.ones(n, dtype=np.float64)
    if overlap > 0:
        t = (np.arange(2 * overlap) + 0.5) / (2 * overlap)
        rise = t if kind == "linear" else np.sin(np.pi / 2 * t) ** 2
        w[: 2 * overlap] = rise
        w[n - 2 * overlap :] = rise[::-1]
    return w.astype(np.float32)


class HardStitcher:
    """Border Correction: class indices of each window's kept centre, side by side.

    ``probabilities``: also the kept softmax, float32 or, with ``scaled``, already as the
    uint8 the probability GeoTIFF stores (``writers.probability_bytes``): a strip of float32
    probabilities of a 7200 px wide scene in ``fast`` mode is 200 MB, its bytes 50 MB.
    """

    def __init__(self, engine: WindowEngine, *, probabilities: bool = False, scaled: bool = False,
                 confidence: str | None = None, disagreement: bool = False) -> None:
        self.engine, self.keep_probs, self.scaled = engine, probabilities, scaled
        self.confidence, self.disagreement = confidence, disagreement and engine.tta
        self.want_probs = probabilities or confidence is not None
        #: the ``confidence``/``disagreement`` rows of the last yield (float32, or uint8 when ``scaled``)
        self.extras: dict[str, np.ndarray] = {}
        self._views: list | None = None
        if type(self)._predict is not HardStitcher._predict and engine.predictor.numpy_native:
            # a subclass written against torch tensors (``rsseg.explain``): give it tensors
            engine.ops = TorchOps()

    def _predict(self, x: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Kept (B, keep_y, keep_x) uint8 classes and, when wanted, (B, K, ...) probabilities."""
        e, ops = self.engine, self.engine.ops
        if e.tta:
            self._views = [] if self.disagreement else None
            p = e.crop(e.probabilities(x, self._views))
            return ops.classes(p), (ops.numpy(p) if self.want_probs else None)
        logits = e.crop(e.logits(x))
        return ops.classes(logits), (ops.numpy(e.softmax(logits)) if self.want_probs else None)

    def add(self, i: int, strip: Strip) -> Iterator[Rows]:
        g = self.engine.grid
        shape = (g.row_sizes[i], g.col_starts[-1])
        classes = np.empty(shape, dtype=np.uint8)
        probs = None
        extras = {k: np.empty(shape, np.uint8 if self.scaled else np.float32)
                  for k, on in (("confidence", self.confidence), ("disagreement", self.disagreement)) if on}
        for cols, x in self.engine.batches(strip):
            cls, p = self._predict(x)
            cls = _as_numpy(cls)
            if self.want_probs:
                p = _as_numpy(p)
                if probs is None and self.keep_probs:
                    dtype = np.uint8 if self.scaled else np.float32
                    probs = np.empty((p.shape[1], *shape), dtype)
            for k, j in enumerate(cols):
                c0, c1 = g.col_starts[j], g.col_starts[j + 1]
                classes[:, c0:c1] = cls[k]
                if self.keep_probs:
                    probs[:, :, c0:c1] = probability_bytes(p[k]) if self.scaled else p[k]
                if self.confidence:
                    c = confidence_map(p[k], self.confidence)
                    extras["confidence"][:, c0:c1] = probability_bytes(c) if self.scaled else c
                if self.disagreement:
                    views = np.stack([self.engine.crop(v[k]) for v in self._views])
                    d = disagreement_map(views, cls[k])
                    extras["disagreement"][:, c0:c1] = probability_bytes(d) if self.scaled else d
        y0, y1 = g.kept_rows(i)
        n, w = y1 - y0, g.w
        self.extras = {k: v[:n, :w] for k, v in extras.items()}
        yield y0, y1, classes[:n, :w], (probs[:, :n, :w] if self.keep_probs else None)


def _as_numpy(x: Any) -> np.ndarray:
    """A numpy array of an array or a (CPU or GPU) torch tensor."""
    return x if isinstance(x, np.ndarray) else x.cpu().numpy()


class Blender:
    """Weighted average of window probabilities around the seams, streamed row-wise."""

    def __init__(self, engine: WindowEngine, kind: str, confidence: str | None = None) -> None:
        g = engine.grid
        self.engine, self.o, self.kind, self.confidence = engine, g.margin, kind, confidence
        self.extras: dict[str, np.ndarray] = {}  # float32 ``confidence`` rows of the last yield
        self.rows = g.keep_y + 2 * self.o  # accumulator rows: scene rows from y0 - o (tallest strip)
        self.width = g.col_starts[-1] + 2 * self.o
        self.acc: np.ndarray | None = None
        self.wsum = np.zeros((self.rows, self.width), np.float32)
        self.emitted = 0
        self._weights: dict[tuple[int, int], np.ndarray] = {}

    def weight(self, ny: int, nx: int) -> np.ndarray:
        """Weights of an ``ny`` x ``nx`` window (tiles of a ``fast`` grid differ by 16 px)."""
        if (ny, nx) not in self._weights:
            self._weights[ny, nx] = ramp(ny, self.o, self.kind)[:, None] * ramp(nx, self.o, self.kind)[None, :]
        return self._weights[ny, nx]

    def add(self, i: int, strip: Strip) -> Iterator[Rows]:
        g, e, o = self.engine.grid, self.engine, self.o
        lo, ny = g.margin - o, g.row_sizes[i] + 2 * o
        for cols, x in e.batches(strip):
            nx = g.col_sizes[cols[0]] + 2 * o  # a batch's windows are equally wide
            p = e.ops.numpy(e.probabilities(x)[:, :, lo : lo + ny, lo : lo + nx])
            if self.acc is None:
                self.acc = np.zeros((p.shape[1], self.rows, self.width), np.float32)
            weight = self.weight(ny, nx)
            for k, j in enumerate(cols):
                c0 = g.col_starts[j]
                self.acc[:, :ny, c0 : c0 + nx] += p[k] * weight
                self.wsum[:ny, c0 : c0 + nx] += weight
        yield from self._emit(i)

    def _emit(self, i: int) -> Iterator[Rows]:
        g, o = self.engine.grid, self.o
        y0, ky = g.row_starts[i], g.row_sizes[i]
        last = i == g.rows - 1
        end = min(g.h, y0 + ky) if last else y0 + ky - o
        a, b = self.emitted - (y0 - o), end - (y0 - o)  # accumulator rows to emit
        if b > a:
            probs = self.acc[:, a:b, o : o + g.w] / self.wsum[a:b, o : o + g.w]
            self.extras = {"confidence": confidence_map(probs, self.confidence)} if self.confidence else {}
            yield self.emitted, end, probs.argmax(axis=0).astype(np.uint8), probs
            self.emitted = end
        # the last 2*o rows overlap the next strip's windows: move them to the top
        keep = self.acc[:, ky : ky + 2 * o].copy(), self.wsum[ky : ky + 2 * o].copy()
        self.acc[:] = 0
        self.wsum[:] = 0
        self.acc[:, : 2 * o], self.wsum[: 2 * o] = keep
