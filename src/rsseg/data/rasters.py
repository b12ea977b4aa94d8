"""Raster access shared by tiling, mask decoding and statistics.

GeoTIFFs (and other block-addressable formats) are read through windows, so a huge scene is
never decoded whole. JPEG and PNG cannot be windowed cheaply (GDAL decodes from the top of the
file for every window), so they are decoded whole once and kept in a small per-process LRU
(``data.decoded_cache``): such files are small in practice (DeepGlobe 2448 px, Dubai <= 2061 px).
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from rsseg.errors import RsSegError

try:  # GDAL errors raised while reading come from here
    from rasterio._err import CPLE_BaseError
except ImportError:  # pragma: no cover
    CPLE_BaseError = RasterioError  # type: ignore[misc,assignment]

#: Drivers whose files must be decoded whole (no internal tiling or strips worth windowing).
WHOLE_FILE_DRIVERS = frozenset({"JPEG", "PNG", "GIF", "BMP", "WEBP"})
READ_ERRORS = (RasterioError, CPLE_BaseError, OSError, ValueError)


@dataclass(frozen=True)
class RasterInfo:
    """What the index needs to know about a file without reading its pixels."""

    height: int
    width: int
    count: int
    dtype: str
    driver: str
    nodata: float | None
    colormap: dict[int, tuple[int, ...]] | None
    descriptions: tuple[str | None, ...]

    @property
    def whole_file(self) -> bool:
        return self.driver in WHOLE_FILE_DRIVERS


def open_raster(path: Path) -> rasterio.DatasetReader:
    """``rasterio.open`` that names the file in an ``RsSegError`` and hides georeferencing noise."""
    path = Path(path)
    if not path.is_file():
        raise RsSegError(f"{path}: file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except READ_ERRORS as exc:
        raise RsSegError(f"{path} is not a readable image: {exc}") from None


def read_error(path: Path, exc: Exception) -> RsSegError:
    """GDAL's own reason (rasterio's "Read failed" only points at it), as one line naming the file."""
    reason = str(exc.__cause__ or exc).replace(f"{Path(path).name}, ", "").split(" (this error can be")[0]
    kind = "truncated image" if "Premature end" in reason else "cannot read pixels (corrupt or truncated?)"
    return RsSegError(f"{path}: {kind}: {reason}")


def raster_info(src: rasterio.DatasetReader) -> RasterInfo:
    colormap = None
    if src.count == 1 and src.colorinterp[0] == ColorInterp.palette:
        try:
            colormap = src.colormap(1)
        except ValueError:
            colormap = None
    return RasterInfo(src.height, src.width, src.count, src.dtypes[0], src.driver, src.nodata,
                      colormap, tuple(src.descriptions))


def clip_window(window: Window, height: int, width: int) -> Window | None:
    """The part of ``window`` inside a ``height`` x ``width`` raster (None when outside)."""
    r0, c0 = max(int(window.row_off), 0), max(int(window.col_off), 0)
    r1 = min(int(window.row_off + window.height), height)
    c1 = min(int(window.col_off + window.width), width)
    if r1 <= r0 or c1 <= c0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


class RasterReader:
    """Per-process open handles plus an LRU of whole decoded JPEG/PNG files.

    Safe across ``fork`` (DataLoader workers): handles are reopened in a new process.
    """

    def __init__(self, decoded_cache: int = 4) -> None:
        self.decoded_cache = decoded_cache
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._handles: dict[Path, rasterio.DatasetReader] = {}
        self._infos: dict[Path, RasterInfo] = {}
        self._decoded: OrderedDict[Path, np.ndarray] = OrderedDict()

    def _handle(self, path: Path) -> rasterio.DatasetReader:
        if self._pid != os.getpid():
            self._reset()
        if path not in self._handles:
            self._handles[path] = open_raster(path)
        return self._handles[path]

    def info(self, path: Path) -> RasterInfo:
        path = Path(path)
        if path not in self._infos or self._pid != os.getpid():
            self._infos[path] = raster_info(self._handle(path))
        return self._infos[path]

    def read(self, path: Path, window: Window | None = None, bands: list[int] | None = None) -> np.ndarray:
        """(C, h, w) pixels of ``window`` (which must lie inside the raster), 1-based ``bands``."""
        path = Path(path)
        info = self.info(path)
        try:
            if info.whole_file:
                return self._from_whole(path, window, bands)
            return self._handle(path).read(bands, window=window)
        except READ_ERRORS as exc:
            raise read_error(path, exc) from None

    def _from_whole(self, path: Path, window: Window | None, bands: list[int] | None) -> np.ndarray:
        data = self._decoded.get(path)
        if data is None:
            data = self._handle(path).read()
            if self.decoded_cache > 0:
                self._decoded[path] = data
                while len(self._decoded) > self.decoded_cache:
                    self._decoded.popitem(last=False)
        else:
            self._decoded.move_to_end(path)
        if bands is not None:
            data = data[[b - 1 for b in bands]]
        if window is not None:
            r, c = int(window.row_off), int(window.col_off)
            data = data[:, r : r + int(window.height), c : c + int(window.width)]
        return data

    def read_decimated(self, path: Path, shape: tuple[int, int]) -> np.ndarray:
        """All bands resampled (nearest) to ``shape``: a cheap whole-scene look for statistics."""
        path = Path(path)
        info = self.info(path)
        try:
            return self._handle(path).read(out_shape=(info.count, *shape))
        except READ_ERRORS as exc:
            raise read_error(path, exc) from None

    def read_padded(self, path: Path, window: Window, bands: list[int] | None, fill: float) -> np.ndarray:
        """(C, H, W) of a window that may reach past the raster edge, padded with ``fill``."""
        info = self.info(path)
        n = len(bands) if bands is not None else info.count
        out = np.full((n, int(window.height), int(window.width)), fill, dtype=info.dtype)
        inner = clip_window(window, info.height, info.width)
        if inner is not None:
            r, c = int(inner.row_off - window.row_off), int(inner.col_off - window.col_off)
            out[:, r : r + int(inner.height), c : c + int(inner.width)] = self.read(path, inner, bands)
        return out

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._reset()

    def __getstate__(self) -> dict:  # open handles do not pickle (spawned workers)
        return {"decoded_cache": self.decoded_cache}

    def __setstate__(self, state: dict) -> None:
        self.decoded_cache = state["decoded_cache"]
        self._reset()


def chunk_windows(height: int, width: int, size: int = 2048) -> list[Window]:
    """Square windows covering a raster: bounded memory for whole-file passes."""
    return [
        Window(c, r, min(size, width - c), min(size, height - r))
        for r in range(0, height, size)
        for c in range(0, width, size)
    ]
