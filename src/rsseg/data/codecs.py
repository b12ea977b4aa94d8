"""Mask codecs: how a dataset writes its labels, decoded exactly into uint8 class indices.

A codec turns the raw pixels of a mask window into class indices (``IGNORE_INDEX`` for no
label). Values or colours outside the class table are counted and, with
``unknown='error'`` (the default), reported with their pixel counts; ``'ignore'`` maps them to
``IGNORE_INDEX`` instead. Palette masks are decoded through their colour map (exactly as if
converted to RGB first); float masks are accepted when every value is integral.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
from rasterio.windows import Window

from rsseg.classes import IGNORE_INDEX
from rsseg.data.rasters import RasterInfo, RasterReader, clip_window
from rsseg.errors import RsSegError

#: Internal marker for "not in the table" (class indices stop at 253; 255 is no label).
UNKNOWN = 254
Unknown = Literal["error", "ignore"]


def rgb_key(rgb: tuple[int, int, int]) -> int:
    return (int(rgb[0]) << 16) | (int(rgb[1]) << 8) | int(rgb[2])


def key_rgb(key: int) -> tuple[int, int, int]:
    return ((key >> 16) & 255, (key >> 8) & 255, key & 255)


class MaskCodec:
    """Base: ``decode`` raw (C, h, w) mask pixels -> (uint8 indices or UNKNOWN, unknown counts)."""

    unknown: Unknown = "error"
    noun = "value"

    def bands(self, info: RasterInfo) -> list[int] | None:
        return [1]

    def decode(self, data: np.ndarray, info: RasterInfo, path: Path) -> tuple[np.ndarray, dict]:
        raise NotImplementedError

    def key(self) -> str:
        """Identifies the decoding (the chip index is rebuilt when it changes)."""
        raise NotImplementedError

    def describe(self, value: int) -> str:
        return str(value)

    def finish(self, decoded: np.ndarray, unknown: Mapping[int, int], path: Path, where: str = "") -> np.ndarray:
        """Raise for unknown values (``unknown='error'``) or turn them into no label."""
        if unknown and self.unknown == "error":
            raise RsSegError(self.unknown_message(unknown, path, where))
        if unknown:
            decoded[decoded == UNKNOWN] = IGNORE_INDEX
        return decoded

    def unknown_message(self, unknown: Mapping[int, int], path: Path, where: str = "") -> str:
        items = sorted(unknown.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{self.describe(v)} x {n} px" for v, n in items[:12])
        more = f" (+{len(items) - 12} more)" if len(items) > 12 else ""
        return (
            f"{path}{where}: {len(items)} mask {self.noun}(s) not in the class table: {shown}{more}; "
            f"fix the class table or set data.unknown_colors: ignore to treat them as no label"
        )


def _integral(data: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Float masks: NaN means no label; any other non-integral value is an error."""
    if not np.issubdtype(data.dtype, np.floating):
        return data, None
    nan = np.isnan(data)
    bad = ~nan & ((data != np.round(data)) | ~np.isfinite(data))
    if bad.any():
        sample = sorted(set(np.unique(data[bad])[:5].tolist()))
        raise RsSegError(f"{path}: float mask holds non-integer values (e.g. {sample}); masks must hold class values")
    return np.where(nan, 0, data).astype(np.int64), nan


class IndexCodec(MaskCodec):
    """Masks holding one value per class (``values``: mask value -> class index or IGNORE)."""

    def __init__(self, values: Mapping[int, int], unknown: Unknown = "error", file_nodata: bool = True) -> None:
        self.values = {int(k): int(v) for k, v in values.items()}
        self.unknown = unknown
        self.file_nodata = file_nodata
        lo, hi = min(self.values, default=0), max(self.values, default=0)
        self.lo = min(lo, 0)
        self.lut = np.full(max(hi, 255) - self.lo + 1, UNKNOWN, dtype=np.uint8)
        self.lut[IGNORE_INDEX - self.lo] = IGNORE_INDEX  # 255 is "no label" unless a class uses it
        for k, v in self.values.items():
            self.lut[k - self.lo] = v

    @classmethod
    def identity(cls, num_classes: int, unknown: Unknown = "error") -> IndexCodec:
        """Values 0..K-1 are classes, 255 is no label (the project's own mask convention)."""
        return cls({i: i for i in range(num_classes)}, unknown)

    @classmethod
    def shifted(cls, num_classes: int, unknown: Unknown = "error") -> IndexCodec:
        """0 is no label and 1..K are classes 0..K-1 (LoveDA, ISPRS in mmseg form, ...)."""
        return cls({0: IGNORE_INDEX, **{i + 1: i for i in range(num_classes)}}, unknown)

    def key(self) -> str:
        return f"index:{sorted(self.values.items())}:{self.unknown}:{self.file_nodata}"

    def bands(self, info: RasterInfo) -> list[int] | None:
        return None  # all: a grey mask saved as RGB is accepted, a colour-coded one refused

    def decode(self, data: np.ndarray, info: RasterInfo, path: Path) -> tuple[np.ndarray, dict]:
        if data.shape[0] > 1 and any(not np.array_equal(data[0], band) for band in data[1:4]):
            raise RsSegError(
                f"{path}: index mask has {data.shape[0]} bands that differ (colour-coded mask? "
                "set data.mask_encoding: color)"
            )
        values, nan = _integral(data[0], path)
        if values.dtype == np.uint8 and self.lo == 0:
            out = self.lut[values]
        else:
            idx = values.astype(np.int64) - self.lo
            inside = (idx >= 0) & (idx < len(self.lut))
            out = np.full(values.shape, UNKNOWN, dtype=np.uint8)
            out[inside] = self.lut[idx[inside]]
        if nan is not None:
            out[nan] = IGNORE_INDEX
        if self.file_nodata and info.nodata is not None and np.isfinite(info.nodata):
            out[values == info.nodata] = IGNORE_INDEX
        return out, _unknown_counts(out, values)


class ColorCodec(MaskCodec):
    """RGB-coded masks (``colors``: (r, g, b) -> class index or IGNORE), exact 24-bit lookup.

    ``threshold`` binarises each channel first (DeepGlobe's instruction for its JPEG-damaged
    masks: channel >= 128 -> 255, else 0). One-band masks are palette indices (decoded through
    the file's colour map) or grey levels (r = g = b).
    """

    noun = "colour"

    def __init__(self, colors: Mapping[tuple[int, int, int], int], unknown: Unknown = "error",
                 threshold: int | None = None) -> None:
        self.colors = {tuple(int(v) for v in k): int(v) for k, v in colors.items()}
        self.unknown = unknown
        self.threshold = threshold
        self._lut: np.ndarray | None = None

    def key(self) -> str:
        return f"color:{sorted(self.colors.items())}:{self.unknown}:{self.threshold}"

    def describe(self, value: int) -> str:
        r, g, b = key_rgb(value)
        return f"({r}, {g}, {b}) #{r:02X}{g:02X}{b:02X}"

    def bands(self, info: RasterInfo) -> list[int] | None:
        return [1, 2, 3] if info.count >= 3 else [1]

    @property
    def lut(self) -> np.ndarray:
        """2**24 entries (16 MB), built on first use: one gather decodes any window."""
        if self._lut is None:
            lut = np.full(1 << 24, UNKNOWN, dtype=np.uint8)
            for rgb, index in self.colors.items():
                lut[rgb_key(rgb)] = index
            self._lut = lut
        return self._lut

    def decode(self, data: np.ndarray, info: RasterInfo, path: Path) -> tuple[np.ndarray, dict]:
        if data.dtype != np.uint8:
            data, _ = _integral(data, path)
            if data.min(initial=0) < 0 or data.max(initial=0) > 255:
                raise RsSegError(f"{path}: colour mask values must be 0..255")
            data = data.astype(np.uint8)
        if data.shape[0] == 1 and info.colormap:
            return self._decode_palette(data[0], info.colormap)
        rgb = np.repeat(data[:1], 3, axis=0) if data.shape[0] == 1 else data[:3]
        if self.threshold is not None:
            rgb = np.where(rgb >= self.threshold, 255, 0).astype(np.uint8)
        keys = (rgb[0].astype(np.uint32) << 16) | (rgb[1].astype(np.uint32) << 8) | rgb[2]
        out = self.lut[keys]
        return out, _unknown_counts(out, keys)

    def _decode_palette(self, indices: np.ndarray, colormap: Mapping[int, tuple[int, ...]]) -> tuple[np.ndarray, dict]:
        keys = np.zeros(256, dtype=np.uint32)
        for i, rgba in colormap.items():
            if 0 <= i < 256:
                rgb = np.asarray(rgba[:3])
                if self.threshold is not None:
                    rgb = np.where(rgb >= self.threshold, 255, 0)
                keys[i] = rgb_key(tuple(rgb))
        out = self.lut[keys][indices]
        return out, _unknown_counts(out, keys[indices])


def _unknown_counts(decoded: np.ndarray, raw: np.ndarray) -> dict[int, int]:
    bad = decoded == UNKNOWN
    if not bad.any():
        return {}
    values, counts = np.unique(raw[bad], return_counts=True)
    return {int(v): int(n) for v, n in zip(values, counts, strict=True)}


def read_mask(reader: RasterReader, path: Path, codec: MaskCodec, window: Window | None = None) -> np.ndarray:
    """(H, W) uint8 class indices of ``window`` (whole file when None); outside the file = no label."""
    path = Path(path)
    info = reader.info(path)
    if window is None:
        window = Window(0, 0, info.width, info.height)
    out = np.full((int(window.height), int(window.width)), IGNORE_INDEX, dtype=np.uint8)
    inner = clip_window(window, info.height, info.width)
    if inner is None:
        return out
    decoded, unknown = codec.decode(reader.read(path, inner, codec.bands(info)), info, path)
    where = "" if (inner.height, inner.width) == (info.height, info.width) else f" (window {inner})"
    decoded = codec.finish(decoded, unknown, path, where)
    r, c = int(inner.row_off - window.row_off), int(inner.col_off - window.col_off)
    out[r : r + int(inner.height), c : c + int(inner.width)] = decoded
    return out
