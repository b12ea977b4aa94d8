"""Strips of window predictions -> finished scene rows, in order.

``HardStitcher`` keeps each window's centre (Border Correction). ``Blender`` instead
cross-fades neighbouring windows over the ``2 * margin`` px around each seam with linear or
cosine weights that sum to one, so it holds back ``2 * margin`` rows until the next strip
has added its share. Both yield ``(y0, y1, classes, probabilities)`` for scene rows
``[y0, y1)``; probabilities are None unless asked for (or needed by TTA/blending). The rows
of their ``heads`` (``rsseg.infer.heads``) for the same scene rows are in ``head_rows``.
Memory: one strip of classes, of kept probabilities when asked for, and of each head.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from rsseg.errors import RsSegError
from rsseg.infer.engine import WindowEngine
from rsseg.infer.heads import WindowHead
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
    ``heads``: per-window outputs, each computed on a window's kept centre and placed the same way.
    """

    def __init__(self, engine: WindowEngine, *, probabilities: bool = False, scaled: bool = False,
                 heads: Sequence[WindowHead] = ()) -> None:
        self.engine, self.keep_probs, self.scaled, self.heads = engine, probabilities, scaled, list(heads)
        self.reads = {h.reads for h in self.heads} | ({"probs"} if probabilities else set())
        _check_heads(self.heads, ("probs", "views") if engine.tta else ("probs", "logits"),
                     "TTA averages probabilities" if engine.tta else "the D4 views need TTA")
        #: the rows of each head for the last yield, by name
        self.head_rows: dict[str, np.ndarray] = {}

    def _predict(self, x: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Kept (B, keep_y, keep_x) uint8 classes and the kept (B, ...) maps the heads read."""
        e, ops = self.engine, self.engine.ops
        maps: dict[str, Any] = {}
        if e.tta:
            views = [] if "views" in self.reads else None
            p = e.crop(e.probabilities(x, views))
            if "probs" in self.reads:
                maps["probs"] = ops.numpy(p)
            if views is not None:
                maps["views"] = views  # per view (B, win_y, win_x) uint8: cropped per window
            return ops.classes(p), maps
        logits = e.crop(e.logits(x))
        if "logits" in self.reads:
            maps["logits"] = ops.numpy(logits)
        if "probs" in self.reads:
            maps["probs"] = ops.numpy(e.softmax(logits))
        return ops.classes(logits), maps

    def add(self, i: int, strip: Strip) -> Iterator[Rows]:
        g = self.engine.grid
        shape = (g.row_sizes[i], g.col_starts[-1])
        classes = np.empty(shape, dtype=np.uint8)
        probs = None
        rows: dict[str, np.ndarray] = {}
        for cols, x in self.engine.batches(strip):
            cls, maps = self._predict(x)
            p = maps.get("probs")
            if probs is None and self.keep_probs:
                probs = np.empty((p.shape[1], *shape), np.uint8 if self.scaled else np.float32)
            for k, j in enumerate(cols):
                c0, c1 = g.col_starts[j], g.col_starts[j + 1]
                classes[:, c0:c1] = cls[k]
                if self.keep_probs:
                    probs[:, :, c0:c1] = probability_bytes(p[k]) if self.scaled else p[k]
                if self.heads:
                    self._place_heads(rows, maps, k, cls[k], shape, c0, c1)
        y0, y1 = g.kept_rows(i)
        n, w = y1 - y0, g.w
        self.head_rows = {k: v[..., :n, :w] for k, v in rows.items()}
        yield y0, y1, classes[:n, :w], (probs[:, :n, :w] if self.keep_probs else None)

    def _place_heads(self, rows: dict[str, np.ndarray], maps: dict[str, Any], k: int, cls: np.ndarray,
                     shape: tuple[int, int], c0: int, c1: int) -> None:
        """Each head's values on window ``k`` of the batch, into its strip at columns ``[c0, c1)``."""
        window = {name: v[k] for name, v in maps.items() if name != "views"}
        if "views" in maps:
            window["views"] = np.stack([self.engine.crop(v[k]) for v in maps["views"]])
        for head in self.heads:
            out = head.compute(window[head.reads], cls)
            if head.name not in rows:
                rows[head.name] = np.empty((*out.shape[:-2], *shape), head.dtype)
            rows[head.name][..., c0:c1] = out


def _check_heads(heads: list[WindowHead], allowed: Sequence[str], why: str) -> None:
    """One clear error for a head this stitcher cannot feed, or two heads with one name."""
    names = [h.name for h in heads]
    if len(set(names)) != len(names):
        raise RsSegError(f"two output heads share a name: {', '.join(names)}")
    for h in heads:
        if h.reads not in allowed:
            raise RsSegError(f"output head '{h.name}' reads '{h.reads}': not available ({why})")


class Blender:
    """Weighted average of window probabilities around the seams, streamed row-wise."""

    def __init__(self, engine: WindowEngine, kind: str, heads: Sequence[WindowHead] = ()) -> None:
        g = engine.grid
        self.engine, self.o, self.kind, self.heads = engine, g.margin, kind, list(heads)
        _check_heads(self.heads, ("probs",), "blending averages probabilities")
        #: the rows of each head for the last yield (applied to the blended probabilities)
        self.head_rows: dict[str, np.ndarray] = {}
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
            classes = probs.argmax(axis=0).astype(np.uint8)
            self.head_rows = {h.name: h.compute(probs, classes).astype(h.dtype, copy=False) for h in self.heads}
            yield self.emitted, end, classes, probs
            self.emitted = end
        # the last 2*o rows overlap the next strip's windows: move them to the top
        keep = self.acc[:, ky : ky + 2 * o].copy(), self.wsum[ky : ky + 2 * o].copy()
        self.acc[:] = 0
        self.wsum[:] = 0
        self.acc[:, : 2 * o], self.wsum[: 2 * o] = keep
