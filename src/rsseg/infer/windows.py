"""Window planning: where each window is read and which centre of it is kept.

A ``Grid`` covers an ``h`` x ``w`` scene with ``rows`` x ``cols`` kept tiles of
``keep_y`` x ``keep_x`` px; each window adds ``margin`` px of context on every side. The
scene is reflect-padded (numpy's ``reflect``, also for pads larger than the scene) up to
whole tiles plus the margin, and the prediction is cropped back to ``h`` x ``w``.

Modes:

- ``reference``: the seed's Border Correction (seed 000 §4.3), window 256, keep 224.
- ``fast``: the same margin around large kept tiles (at most ``fast_tile`` a side), sized
  so the tiles split the scene evenly in multiples of 16 px: fewer windows, less recomputed
  overlap and almost no padding waste. Fully convolutional networks see the same context
  at every kept pixel, so the maps agree with ``reference`` up to the context the margin
  already cuts off.
- ``naive``: non-overlapping ``keep``-sized tiles, no margin: the seed's pre-fix tiling,
  for seam comparisons only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rsseg.errors import RsSegError

MODES = ("reference", "fast", "naive")
#: Kept tile sides in ``fast`` mode are multiples of this (the U-Net's and TIFF's granule).
FAST_MULTIPLE = 16
DEFAULT_FAST_TILE = 1024


def check_border(window: int, keep: int) -> int:
    """The margin of a window/keep pair, or a clear error when the pair makes no sense."""
    if keep <= 0 or window < keep or (window - keep) % 2:
        raise RsSegError(
            f"invalid border correction: window={window}, keep={keep} "
            "(need keep > 0, window >= keep and window - keep even)"
        )
    return (window - keep) // 2


def count_windows(h: int, w: int, keep: int) -> int:
    """Number of windows needed to cover an ``h`` x ``w`` scene with stride ``keep``."""
    return math.ceil(h / keep) * math.ceil(w / keep)


def balanced_tile(n: int, tile: int, multiple: int = FAST_MULTIPLE) -> int:
    """Smallest multiple of ``multiple`` that covers ``n`` px in ``ceil(n / tile)`` tiles:
    7200 px with tile 1024 -> 8 tiles of 912 (7296 px) instead of 8 of 1024 (8192 px)."""
    count = max(1, math.ceil(n / tile))
    return max(multiple, math.ceil(n / count / multiple) * multiple)


@dataclass(frozen=True)
class Grid:
    """Kept tiles of ``keep_y`` x ``keep_x`` with ``margin`` px of context around each."""

    h: int
    w: int
    keep_y: int
    keep_x: int
    margin: int

    @property
    def rows(self) -> int:
        return math.ceil(self.h / self.keep_y)

    @property
    def cols(self) -> int:
        return math.ceil(self.w / self.keep_x)

    @property
    def windows(self) -> int:
        return self.rows * self.cols

    @property
    def win_y(self) -> int:
        return self.keep_y + 2 * self.margin

    @property
    def win_x(self) -> int:
        return self.keep_x + 2 * self.margin

    @property
    def padded_w(self) -> int:
        """Width of a strip: all kept tiles of a row plus the margin on both sides."""
        return self.cols * self.keep_x + 2 * self.margin

    def row_sources(self, i: int) -> np.ndarray:
        """Scene rows (reflected at the edges) that make up window row ``i``."""
        return _reflected(self.h, self.rows * self.keep_y, self.margin)[
            i * self.keep_y : i * self.keep_y + self.win_y
        ]

    def col_sources(self) -> np.ndarray:
        """Scene columns (reflected at the edges) of a whole strip."""
        return _reflected(self.w, self.cols * self.keep_x, self.margin)

    def kept_rows(self, i: int) -> tuple[int, int]:
        """Scene rows ``[y0, y1)`` that window row ``i`` labels."""
        y0 = i * self.keep_y
        return y0, min(self.h, y0 + self.keep_y)


def _reflected(n: int, covered: int, margin: int) -> np.ndarray:
    # np.pad on an index vector gives exactly the rows np.pad(image, mode="reflect") would
    return np.pad(np.arange(n), (margin, covered - n + margin), mode="reflect")


def plan_grid(
    h: int,
    w: int,
    mode: str,
    window: int,
    keep: int,
    fast_tile: int = DEFAULT_FAST_TILE,
) -> Grid:
    """The grid of ``mode`` for an ``h`` x ``w`` scene; ``window``/``keep`` are the
    reference pair (their margin is also the ``fast`` margin)."""
    margin = check_border(window, keep)
    if h <= 0 or w <= 0:
        raise RsSegError(f"image is empty: {h}x{w} pixels")
    if mode == "reference":
        return Grid(h, w, keep, keep, margin)
    if mode == "naive":
        return Grid(h, w, keep, keep, 0)
    if mode == "fast":
        if fast_tile < FAST_MULTIPLE:
            raise RsSegError(f"fast tile must be at least {FAST_MULTIPLE} px, got {fast_tile}")
        return Grid(h, w, balanced_tile(h, fast_tile), balanced_tile(w, fast_tile), margin)
    raise RsSegError(f"unknown prediction mode '{mode}'; choose one of {', '.join(MODES)}")
