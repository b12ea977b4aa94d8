"""Class areas of a streamed class map: exact pixel counts and, with a CRS, km².

Areas are ellipsoidal (WGS84), not map-projection areas, so Web Mercator or geographic
inputs get true areas too. The pixel area is evaluated per 64 x 64 px block: three block
corners are taken to longitude/latitude and the parallelogram they span is weighted by the
local area element ``M(phi) N(phi) cos(phi)``.
"""

from __future__ import annotations

import math

import numpy as np
from rasterio.errors import RasterioError
from rasterio.warp import transform as warp_transform

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.infer.reader import SceneInfo

AREA_BLOCK = 64
_A, _F = 6378137.0, 1 / 298.257223563  # WGS84
_E2 = _F * (2 - _F)


class AreaCounter:
    """Accumulates per-class pixels (and km² where the scene has a CRS) row chunk by chunk."""

    def __init__(self, info: SceneInfo, num_classes: int) -> None:
        self.info, self.k = info, num_classes
        self.pixels = np.zeros(256, dtype=np.int64)
        self.geo = info.crs is not None
        self.km2 = np.zeros(num_classes, dtype=np.float64)
        self.note = None if self.geo else "no CRS: areas in pixels only"

    def add(self, y0: int, classes: np.ndarray) -> None:
        if not self.geo:
            self.pixels += _value_counts(classes, self.k)
            return
        for r in range(0, classes.shape[0], AREA_BLOCK):
            self._add_km2(y0 + r, classes[r : r + AREA_BLOCK])

    def _add_km2(self, y0: int, chunk: np.ndarray) -> None:
        """Class counts per 64 px column block, weighted by the blocks' pixel areas; their
        sum over blocks is the chunk's pixel count."""
        n, w = chunk.shape
        blocks = math.ceil(w / AREA_BLOCK)
        key = (np.arange(w, dtype=np.int32) // AREA_BLOCK)[None, :] * 256 + chunk
        counts = np.bincount(key.ravel(), minlength=blocks * 256).reshape(blocks, 256)
        self.pixels += counts.sum(axis=0)
        area = self._block_pixel_area(y0 + n / 2, (np.arange(blocks) + 0.5) * AREA_BLOCK)
        if area is None:
            self.geo, self.note = False, "CRS could not be converted to longitude/latitude"
            self.km2[:] = 0
            return
        self.km2 += counts[:, : self.k].T.astype(np.float64) @ area / 1e6

    def _block_pixel_area(self, row: float, cols: np.ndarray) -> np.ndarray | None:
        """m² of one pixel around (row, cols), from the lon/lat of three nearby points."""
        t, s = self.info.transform, float(AREA_BLOCK)
        px = np.concatenate([cols, cols + s, cols])
        py = np.concatenate([np.full_like(cols, row), np.full_like(cols, row), np.full_like(cols, row + s)])
        xs, ys = t.a * px + t.b * py + t.c, t.d * px + t.e * py + t.f
        try:
            lon, lat = warp_transform(self.info.crs, "EPSG:4326", list(xs), list(ys))
        except (RasterioError, ValueError):
            return None
        lon, lat = np.radians(np.asarray(lon)), np.radians(np.asarray(lat))
        if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
            return None
        m = len(cols)
        dl1 = _wrap(lon[m : 2 * m] - lon[:m])
        dl2 = _wrap(lon[2 * m :] - lon[:m])
        dp1, dp2 = lat[m : 2 * m] - lat[:m], lat[2 * m :] - lat[:m]
        phi = lat[:m]
        sin2 = np.sin(phi) ** 2
        mn = _A**2 * (1 - _E2) / (1 - _E2 * sin2) ** 2  # M * N
        return np.abs(dl1 * dp2 - dl2 * dp1) * mn * np.cos(phi) / s**2

    def summary(self, classes: ClassTable) -> dict:
        valid = int(self.pixels[: self.k].sum())
        rows = []
        for i, name in enumerate(classes.names):
            px = int(self.pixels[i])
            row = {"index": i, "name": name, "pixels": px,
                   "fraction": round(px / valid, 6) if valid else None}
            row["km2"] = _sig(self.km2[i]) if self.geo else None
            rows.append(row)
        return {
            "classes": rows,
            "valid_pixels": valid,
            "nodata_pixels": int(self.pixels[IGNORE_INDEX]),
            "total_km2": _sig(self.km2.sum()) if self.geo else None,
            "area_note": self.note or "ellipsoidal (WGS84) areas in km², not map-projection areas",
        }


def _value_counts(classes: np.ndarray, k: int) -> np.ndarray:
    """``np.bincount(classes, minlength=256)`` for a class map, which holds the values 0..k-1
    and 255: one comparison pass per value instead of bincount's cast of every pixel to int64
    (measured 2x faster on 6-class rows); any other value falls back to bincount."""
    out = np.zeros(256, dtype=np.int64)
    for v in (*range(k), IGNORE_INDEX):
        out[v] = np.count_nonzero(classes == v)
    if out.sum() != classes.size:
        return np.bincount(classes.ravel(), minlength=256)
    return out


def _sig(v: float) -> float:
    """9 significant digits: km² of small scenes stay meaningful, JSON stays readable."""
    return float(f"{float(v):.9g}")


def _wrap(d: np.ndarray) -> np.ndarray:
    return (d + np.pi) % (2 * np.pi) - np.pi
