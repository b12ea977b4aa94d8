"""Window planning: where each window is read and which centre of it is kept.

A ``Grid`` covers an ``h`` x ``w`` scene with ``rows`` x ``cols`` kept tiles; row ``i``
keeps ``row_sizes[i]`` px, column ``j`` keeps ``col_sizes[j]`` px, and each window adds
``margin`` px of context on every side. The scene is reflect-padded (numpy's ``reflect``,
also for pads larger than the scene) up to the tiles plus the margin, and the prediction is
cropped back to ``h`` x ``w``.

Modes:

- ``reference``: the seed's Border Correction (seed 000 §4.3), window 256, keep 224.
- ``fast``: the same margin around large kept tiles (at most ``fast_tile`` a side), in
  multiples of 16 px, so that few pixels are computed twice or wasted on padding:

  - rows split the height as evenly as 16 px allow (sizes differ by 16 px at most,
    larger first), covering it with under 16 px to spare;
  - columns are equal, ``ceil(w / fast_tile)`` of them or one more, whichever computes
    fewer pixels. Unequal columns would alternate window shapes within each strip, and
    the freed memory rsseg keeps while predicting (``rsseg.allocator``) then fragments:
    +200 MB peak RSS on the bench scene for 1 % less time. Rows change shape once, from
    larger to smaller, which reuses the freed blocks.

  A 7200 x 6800 scene gets rows of 5 x 976 and 2 x 960 px and 9 columns of 800 px:
  1.074x the scene's pixels computed, against 1.088x with 7 x 8 tiles of 976 x 912.
  Fully convolutional networks see the same context at every kept pixel, so the maps
  agree with ``reference`` up to the context the margin already cuts off.
- ``naive``: non-overlapping ``keep``-sized tiles, no margin: the seed's pre-fix tiling,
  for seam comparisons only.
- ``whole``: the scene in one forward pass, reflect-padded at the bottom and right to
  multiples of ``WHOLE_MULTIPLE`` px: what a plain script does (``model(pad(image))``), so
  its maps are the baseline the tiled modes are checked against. The pass's activations
  grow with the scene, so scenes over ``WHOLE_MAX_PIXELS`` are refused rather than left to
  exhaust memory.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from rsseg.config.infer import border_problem
from rsseg.errors import RsSegError

#: Kept tile sides in ``fast`` mode are multiples of this (the U-Net's and TIFF's granule).
FAST_MULTIPLE = 16
DEFAULT_FAST_TILE = 1024
#: ``whole`` pads each side to a multiple of this: 2**5, the granule of a 5-level encoder
#: (SMP's U-Nets; the seed U-Net's 2**4 divides it), so no model pads again inside.
WHOLE_MULTIPLE = 32
#: Largest scene ``whole`` takes in one pass: 4096 x 4096 px. The demo U-Net's activations
#: take about 0.5 kB a pixel, so 8 GB here; larger scenes belong to ``fast``.
WHOLE_MAX_PIXELS = 4096 * 4096


def check_border(window: int, keep: int) -> int:
    """The margin of a window/keep pair, or a clear error when the pair makes no sense."""
    problem = border_problem(window, keep)
    if problem:
        raise RsSegError(f"invalid border correction: window={window}, keep={keep} ({problem})")
    return (window - keep) // 2


def count_windows(h: int, w: int, keep: int) -> int:
    """Number of windows needed to cover an ``h`` x ``w`` scene with stride ``keep``."""
    return math.ceil(h / keep) * math.ceil(w / keep)


def balanced_sizes(n: int, tile: int, multiple: int = FAST_MULTIPLE) -> tuple[int, ...]:
    """``ceil(n / tile)`` tile sizes, multiples of ``multiple`` that differ by at most
    ``multiple``, larger first, summing to ``n`` rounded up to ``multiple``:
    6800 px with tile 1024 -> (976, 976, 976, 976, 976, 960, 960)."""
    granules = max(1, math.ceil(n / multiple))
    count = min(granules, max(1, math.ceil(n / tile)))
    q, r = divmod(granules, count)
    return (multiple * (q + 1),) * r + (multiple * q,) * (count - r)


def equal_sizes(n: int, tile: int, margin: int, multiple: int = FAST_MULTIPLE) -> tuple[int, ...]:
    """Equal tiles, multiples of ``multiple``, covering ``n`` px: ``ceil(n / tile)`` of them or
    one more, whichever computes fewer pixels with the margins and the padding (the fewer
    tiles on a tie): 7200 px, tile 1024, margin 16 -> 9 of 800 (7488 px computed), not 8 of
    912 (7552 px)."""
    first = max(1, math.ceil(n / tile))
    options = []  # (pixels computed, tiles, size); a tie goes to the fewer tiles
    for count in (first, first + 1):
        size = max(multiple, math.ceil(n / count / multiple) * multiple)
        count = math.ceil(n / size)
        options.append((count * (size + 2 * margin), count, size))
    _, count, size = min(options)
    return (size,) * count


def _starts(sizes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(v) for v in np.cumsum((0, *sizes)))


@dataclass(frozen=True)
class Grid:
    """Kept tiles (``row_sizes`` x ``col_sizes`` px) with ``margin`` px of context around each."""

    h: int
    w: int
    row_sizes: tuple[int, ...]
    col_sizes: tuple[int, ...]
    margin: int

    @classmethod
    def uniform(cls, h: int, w: int, keep_y: int, keep_x: int, margin: int) -> Grid:
        """Equal ``keep_y`` x ``keep_x`` tiles, the last ones reaching past the scene."""
        return cls(h, w, (keep_y,) * math.ceil(h / keep_y), (keep_x,) * math.ceil(w / keep_x), margin)

    @property
    def rows(self) -> int:
        return len(self.row_sizes)

    @property
    def cols(self) -> int:
        return len(self.col_sizes)

    @property
    def windows(self) -> int:
        return self.rows * self.cols

    @property
    def keep_y(self) -> int:
        """The tallest kept tile."""
        return max(self.row_sizes)

    @property
    def keep_x(self) -> int:
        """The widest kept tile."""
        return max(self.col_sizes)

    @property
    def win_y(self) -> int:
        """The tallest window."""
        return self.keep_y + 2 * self.margin

    @property
    def win_x(self) -> int:
        """The widest window."""
        return self.keep_x + 2 * self.margin

    @functools.cached_property
    def row_starts(self) -> tuple[int, ...]:
        """Scene row where each tile row starts, then the covered height."""
        return _starts(self.row_sizes)

    @functools.cached_property
    def col_starts(self) -> tuple[int, ...]:
        """Scene column where each tile column starts, then the covered width."""
        return _starts(self.col_sizes)

    def col_span(self, j: int) -> tuple[int, int]:
        """Strip columns ``[c0, c1)`` of window ``j`` (its tile plus both margins)."""
        c0 = self.col_starts[j]
        return c0, c0 + self.col_sizes[j] + 2 * self.margin

    def col_batches(self, batch: int) -> list[list[int]]:
        """Window columns in runs of equal width, at most ``batch`` each: one forward pass each."""
        out: list[list[int]] = []
        for j in range(self.cols):
            if out and len(out[-1]) < batch and self.col_sizes[out[-1][0]] == self.col_sizes[j]:
                out[-1].append(j)
            else:
                out.append([j])
        return out

    def row_sources(self, i: int) -> np.ndarray:
        """Scene rows (reflected at the edges) that make up window row ``i``."""
        y0 = self.row_starts[i]
        return _reflected(self.h, self.row_starts[-1], self.margin)[y0 : y0 + self.row_sizes[i] + 2 * self.margin]

    def col_sources(self) -> np.ndarray:
        """Scene columns (reflected at the edges) of a whole strip."""
        return _reflected(self.w, self.col_starts[-1], self.margin)

    def kept_rows(self, i: int) -> tuple[int, int]:
        """Scene rows ``[y0, y1)`` that window row ``i`` labels."""
        y0 = self.row_starts[i]
        return y0, min(self.h, y0 + self.row_sizes[i])


def _reflected(n: int, covered: int, margin: int) -> np.ndarray:
    # np.pad on an index vector gives exactly the rows np.pad(image, mode="reflect") would
    return np.pad(np.arange(n), (margin, covered - n + margin), mode="reflect")


def _reference(h: int, w: int, margin: int, window: int, keep: int, fast_tile: int) -> Grid:
    return Grid.uniform(h, w, keep, keep, margin)


def _naive(h: int, w: int, margin: int, window: int, keep: int, fast_tile: int) -> Grid:
    return Grid.uniform(h, w, keep, keep, 0)


def _fast(h: int, w: int, margin: int, window: int, keep: int, fast_tile: int) -> Grid:
    if fast_tile < FAST_MULTIPLE:
        raise RsSegError(f"fast tile must be at least {FAST_MULTIPLE} px, got {fast_tile}")
    return Grid(h, w, balanced_sizes(h, fast_tile), equal_sizes(w, fast_tile, margin), margin)


def _whole(h: int, w: int, margin: int, window: int, keep: int, fast_tile: int) -> Grid:
    if h * w > WHOLE_MAX_PIXELS:
        raise RsSegError(
            f"a {w}x{h} scene ({h * w / 1e6:.1f} Mpix) is over the whole mode's limit of "
            f"{WHOLE_MAX_PIXELS / 1e6:.1f} Mpix (one forward pass would exhaust memory): use --mode fast"
        )
    return Grid(h, w, (_round_up(h, WHOLE_MULTIPLE),), (_round_up(w, WHOLE_MULTIPLE),), 0)


def _round_up(n: int, multiple: int) -> int:
    return multiple * math.ceil(n / multiple)


#: Prediction modes: each plans the grid of an ``h`` x ``w`` scene.
PLANNERS = {"reference": _reference, "fast": _fast, "naive": _naive, "whole": _whole}
MODES = tuple(PLANNERS)


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
    if mode not in PLANNERS:
        raise RsSegError(f"unknown prediction mode '{mode}'; choose one of {', '.join(MODES)}")
    return PLANNERS[mode](h, w, margin, window, keep, fast_tile)
