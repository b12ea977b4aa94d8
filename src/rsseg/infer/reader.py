"""Reading scenes a strip at a time, with reflection at the scene edges.

Rows are read in increasing order and each source row is read once (the rows two window
rows share are kept from one strip to the next), so sequential formats (JPEG, PNG, striped
TIFF) are decoded once and memory holds one strip: ``bands x window height x width``.
rasterio's boundless reads pad with a constant, so reflection is done here, with exactly the
index mapping of ``np.pad(..., mode="reflect")``.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from rsseg.errors import RsSegError
from rsseg.infer.windows import Grid
from rsseg.io import check_input

try:  # rasterio >= 1.0 exposes GDAL errors from here
    from rasterio._err import CPLE_BaseError
except ImportError:  # pragma: no cover
    CPLE_BaseError = RasterioError  # type: ignore[misc,assignment]

READ_ERRORS = (RasterioError, CPLE_BaseError, OSError, ValueError)


@dataclass
class SceneInfo:
    """What the outputs copy from the input: size, bands, georeferencing, nodata."""

    path: Path | None
    height: int
    width: int
    count: int
    dtype: str
    crs: Any = None
    transform: Affine = field(default_factory=Affine.identity)
    nodata: float | None = None
    gcps: tuple = ((), None)

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None or self.transform != Affine.identity() or bool(self.gcps[0])


class RasterSource:
    """An open raster file whose read errors name the file."""

    def __init__(self, path: Path) -> None:
        self.path = check_input(path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self._ds = rasterio.open(self.path)
                ds = self._ds
                self.info = SceneInfo(
                    self.path, ds.height, ds.width, ds.count, ds.dtypes[0], ds.crs,
                    ds.transform, ds.nodata, ds.gcps,
                )
        except READ_ERRORS as exc:
            raise RsSegError(f"{self.path} is not a readable image: {exc}") from exc
        self.block_height = int(ds.block_shapes[0][0]) if ds.block_shapes else 1

    def read_rows(self, r0: int, r1: int) -> np.ndarray:
        """Scene rows ``[r0, r1)``, all bands: (count, r1 - r0, width)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                return self._ds.read(window=Window(0, r0, self.info.width, r1 - r0))
        except READ_ERRORS as exc:
            raise RsSegError(
                f"{self.path} is not a readable image: rows {r0}-{r1} failed "
                f"(truncated or corrupt?): {exc}"
            ) from exc

    def close(self) -> None:
        self._ds.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ArraySource:
    """An in-memory (bands, H, W) image behind the same interface as ``RasterSource``."""

    def __init__(self, image: np.ndarray, nodata: float | None = None) -> None:
        if image.ndim != 3:
            raise RsSegError(f"expected a (bands, height, width) image, got shape {image.shape}")
        self.image = image
        c, h, w = image.shape
        self.path = None
        self.info = SceneInfo(None, h, w, c, str(image.dtype), nodata=nodata)

    def read_rows(self, r0: int, r1: int) -> np.ndarray:
        return self.image[:, r0:r1]


def _reflect_split(idx: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(before, start, stop, after)`` such that ``idx`` is ``range(start, stop)`` reflect-padded
    by ``before`` and ``after`` as ``np.pad(..., mode="reflect")`` pads, or None if it is not."""
    if len(idx) == 0:
        return None
    steps = np.flatnonzero(np.diff(idx) != 1)  # the run is the longest stretch of +1 steps
    bounds = np.concatenate([[-1], steps, [len(idx) - 1]])
    k = int(np.argmax(np.diff(bounds)))
    first, last = int(bounds[k]) + 1, int(bounds[k + 1])
    start, stop = int(idx[first]), int(idx[last]) + 1
    before, after = first, len(idx) - 1 - last
    if (before or after) and stop - start < 2:
        return None
    candidate = np.pad(np.arange(start, stop), (before, after), mode="reflect") if before or after else None
    if candidate is not None and not np.array_equal(candidate, idx):
        return None
    return before, start, stop, after


@dataclass
class Strip:
    """Raw scene rows ``[lo, lo + data.shape[1])`` plus the reflected indices of one
    window row: ``window(j)`` cuts window ``j`` out without building the padded strip."""

    data: np.ndarray
    lo: int
    rows: np.ndarray
    cols: np.ndarray
    grid: Grid

    @functools.cached_property
    def _row_split(self) -> tuple[int, int, int, int] | None:
        """The rows' split, the same for every window of the strip."""
        return _reflect_split(self.rows - self.lo)

    def window(self, j: int) -> np.ndarray:
        """Window ``j`` of this row: a view where it lies inside the scene (most windows), a
        slice reflect-padded by ``np.pad`` where it reaches over an edge, and a gathered copy
        where ``np.pad`` cannot reproduce the indices (a scene side under 2 px)."""
        c0, c1 = self.grid.col_span(j)
        cols = self.cols[c0:c1]
        split_r, split_c = self._row_split, _reflect_split(cols)
        if split_r is None or split_c is None:
            rows = self.rows - self.lo
            return self.data[:, rows[:, None], cols[None, :]]
        (top, r0, r1, bottom), (left, c0, c1, right) = split_r, split_c
        inner = self.data[:, r0:r1, c0:c1]
        if top == bottom == left == right == 0:
            return inner
        return np.pad(inner, ((0, 0), (top, bottom), (left, right)), mode="reflect")

    def scene_rows(self, y0: int, y1: int) -> np.ndarray:
        """Raw scene rows ``[y0, y1)`` (kept rows are always inside the strip)."""
        return self.data[:, y0 - self.lo : y1 - self.lo]


class StripReader:
    """Window row ``i`` of ``grid`` -> ``Strip``, reusing rows already read."""

    def __init__(self, source: RasterSource | ArraySource, grid: Grid) -> None:
        self.source, self.grid = source, grid
        self._cols = grid.col_sources()
        self._buf: np.ndarray | None = None
        self._lo = 0
        self.max_rows_held = 0  # for tests: memory is one strip, whatever the scene

    def strip(self, i: int) -> Strip:
        rows = self.grid.row_sources(i)
        lo, hi = int(rows.min()), int(rows.max()) + 1
        # kept rows must be in the buffer too (they are, unless the margin is 0)
        y0, y1 = self.grid.kept_rows(i)
        lo, hi = min(lo, y0), max(hi, y1)
        data = self._rows(lo, hi)
        self.max_rows_held = max(self.max_rows_held, data.shape[1])
        return Strip(data, lo, rows, self._cols, self.grid)

    def _rows(self, lo: int, hi: int) -> np.ndarray:
        buf, blo = self._buf, self._lo
        if buf is not None and blo <= lo < blo + buf.shape[1]:
            bhi = blo + buf.shape[1]
            keep = buf[:, lo - blo :]
            if hi > bhi:
                keep = np.concatenate([keep, self.source.read_rows(bhi, hi)], axis=1)
            data = keep[:, : hi - lo]
        else:
            data = self.source.read_rows(lo, hi)
        self._buf, self._lo = data, lo
        return data


def valid_mask(raw: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """(H, W) bool, False where every band equals nodata; None when there is no nodata."""
    if nodata is None:
        return None
    if isinstance(nodata, float) and math.isnan(nodata):
        return ~np.all(np.isnan(raw), axis=0)
    return ~np.all(raw == nodata, axis=0)


def read_image(path: Path) -> tuple[np.ndarray, dict]:
    """Read all bands of a GeoTIFF/JPEG/PNG -> ((C, H, W) array, profile dict)."""
    src = RasterSource(path)
    with src:
        image = src.read_rows(0, src.info.height)
        info = src.info
    profile = {"crs": info.crs, "transform": info.transform, "nodata": info.nodata,
               "width": info.width, "height": info.height}
    return image, profile
