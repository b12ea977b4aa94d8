"""Strips of window predictions -> finished scene rows, in order.

``HardStitcher`` keeps each window's centre (Border Correction). ``Blender`` instead
cross-fades neighbouring windows over the ``2 * margin`` px around each seam with linear or
cosine weights that sum to one, so it holds back ``2 * margin`` rows until the next strip
has added its share. Both yield ``(y0, y1, classes, probabilities)`` for scene rows
``[y0, y1)``; probabilities are None unless asked for (or needed by TTA/blending).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from rsseg.infer.engine import WindowEngine
from rsseg.infer.reader import Strip

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
    """Border Correction: class indices of each window's kept centre, side by side."""

    def __init__(self, engine: WindowEngine, *, probabilities: bool = False) -> None:
        self.engine, self.want_probs = engine, probabilities

    def _predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Kept (B, keep_y, keep_x) classes and, when wanted, (B, K, ...) probabilities."""
        e = self.engine
        if e.tta:
            p = e.crop(e.probabilities(x))
            return p.argmax(dim=1), p
        logits = e.crop(e.logits(x))
        return logits.argmax(dim=1), (torch.softmax(logits, dim=1) if self.want_probs else None)

    def add(self, i: int, strip: Strip) -> Iterator[Rows]:
        g = self.engine.grid
        classes = np.empty((g.keep_y, g.cols * g.keep_x), dtype=np.uint8)
        probs = None
        for cols, x in self.engine.batches(strip):
            cls, p = self._predict(x)
            cls = cls.to(torch.uint8).cpu().numpy()
            if self.want_probs and probs is None:
                probs = np.empty((p.shape[1], g.keep_y, g.cols * g.keep_x), np.float32)
            for k, j in enumerate(cols):
                classes[:, j * g.keep_x : (j + 1) * g.keep_x] = cls[k]
                if self.want_probs:
                    probs[:, :, j * g.keep_x : (j + 1) * g.keep_x] = p[k].cpu().numpy()
        y0, y1 = g.kept_rows(i)
        n, w = y1 - y0, g.w
        yield y0, y1, classes[:n, :w], (probs[:, :n, :w] if self.want_probs else None)


class Blender:
    """Weighted average of window probabilities around the seams, streamed row-wise."""

    def __init__(self, engine: WindowEngine, kind: str) -> None:
        g = engine.grid
        self.engine, self.o = engine, g.margin
        self.wy = ramp(g.keep_y + 2 * self.o, self.o, kind)
        self.wx = ramp(g.keep_x + 2 * self.o, self.o, kind)
        self.rows = g.keep_y + 2 * self.o  # accumulator rows: scene rows from y0 - o
        self.width = g.cols * g.keep_x + 2 * self.o
        self.acc: np.ndarray | None = None
        self.wsum = np.zeros((self.rows, self.width), np.float32)
        self.emitted = 0

    def add(self, i: int, strip: Strip) -> Iterator[Rows]:
        g, e, o = self.engine.grid, self.engine, self.o
        lo, hi = g.margin - o, g.margin + g.keep_y + o
        for cols, x in e.batches(strip):
            p = e.probabilities(x)[:, :, lo:hi, g.margin - o : g.margin + g.keep_x + o].cpu().numpy()
            if self.acc is None:
                self.acc = np.zeros((p.shape[1], self.rows, self.width), np.float32)
            weight = self.wy[:, None] * self.wx[None, :]
            for k, j in enumerate(cols):
                c0 = j * g.keep_x
                self.acc[:, :, c0 : c0 + p.shape[3]] += p[k] * weight
                self.wsum[:, c0 : c0 + p.shape[3]] += weight
        yield from self._emit(i)

    def _emit(self, i: int) -> Iterator[Rows]:
        g, o = self.engine.grid, self.o
        y0 = i * g.keep_y
        last = i == g.rows - 1
        end = min(g.h, y0 + g.keep_y) if last else y0 + g.keep_y - o
        a, b = self.emitted - (y0 - o), end - (y0 - o)  # accumulator rows to emit
        if b > a:
            probs = self.acc[:, a:b, o : o + g.w] / self.wsum[a:b, o : o + g.w]
            yield self.emitted, end, probs.argmax(axis=0).astype(np.uint8), probs
            self.emitted = end
        # the last 2*o rows overlap the next strip's windows: move them to the top
        keep = self.acc[:, g.keep_y :].copy(), self.wsum[g.keep_y :].copy()
        self.acc[:] = 0
        self.wsum[:] = 0
        self.acc[:, : 2 * o], self.wsum[: 2 * o] = keep
