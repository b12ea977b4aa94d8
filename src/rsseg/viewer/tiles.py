"""PNG tiles cut on demand from a scene's rasters, in the scene's own pixel grid.

Zoom ``z`` of ``0..max_zoom`` shows ``2 ** (max_zoom - z)`` map pixels per tile pixel; tile
(x, y) covers map pixels ``[x, x+1) * 256 * that``. Reads go through ``out_shape``, so GDAL
uses the rasters' internal overviews (COGs have them) and a tile costs one 256 px read at
any zoom. Class maps keep their classes (nearest), nodata is transparent; confidence is drawn
on the red-yellow-green ramp of its QGIS style; images are stretched per band between the
2nd and 98th percentiles of a small overview, computed once per scene.

Memory contract: one tile's window at a time, plus the image stretch per scene.
"""

from __future__ import annotations

import functools
import io
import warnings
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from rsseg.errors import RsSegError
from rsseg.gis.qml import CONFIDENCE_RAMP
from rsseg.viewer.scenes import TILE, Scene

_EMPTY = None


def _ramp() -> np.ndarray:
    """(256, 4) uint8: stored confidence value -> RGBA along the style's ramp; 255 transparent."""
    values = [v for v, _, _ in CONFIDENCE_RAMP]
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for _, c, _ in CONFIDENCE_RAMP], float)
    x = np.arange(256)
    lut = np.stack([np.interp(x, values, rgb[:, k]) for k in range(3)] + [np.full(256, 255.0)], axis=1)
    lut[255] = 0
    return lut.astype(np.uint8)


RAMP = _ramp()


def _read(path: Path, scene: Scene, z: int, x: int, y: int, bands=None,
          resampling=Resampling.nearest) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The tile's data (bands, h, w) and its size in tile pixels; None outside the scene."""
    if not (0 <= z <= scene.max_zoom):
        raise RsSegError(f"zoom {z} is outside 0..{scene.max_zoom}")
    step = 2 ** (scene.max_zoom - z)
    col, row = x * TILE * step, y * TILE * step
    if x < 0 or y < 0 or col >= scene.width or row >= scene.height:
        return None
    w, h = min(TILE * step, scene.width - col), min(TILE * step, scene.height - row)
    out_w, out_h = max(1, -(-w // step)), max(1, -(-h // step))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            data = src.read(bands, window=Window(col, row, w, h), out_shape=(len(bands or range(src.count)),
                            out_h, out_w), resampling=resampling)
    return data, (out_w, out_h)


def _png(rgba: np.ndarray, size: tuple[int, int]) -> bytes:
    tile = np.zeros((TILE, TILE, 4), np.uint8)
    tile[: size[1], : size[0]] = rgba
    buf = io.BytesIO()
    Image.fromarray(tile, "RGBA").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def empty_tile() -> bytes:
    global _EMPTY
    if _EMPTY is None:
        _EMPTY = _png(np.zeros((0, 0, 4), np.uint8), (0, 0))
    return _EMPTY


@functools.lru_cache(maxsize=32)
def _stretch(path: Path) -> tuple[list[int], np.ndarray, np.ndarray, float | None]:
    """(bands shown, low, high, nodata) of an image, from an overview of at most 512 px."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            bands = [1, 2, 3] if src.count >= 3 else [1]
            f = max(1, max(src.width, src.height) // 512)
            sample = src.read(bands, out_shape=(len(bands), max(1, src.height // f), max(1, src.width // f)))
            nodata = src.nodata
    sample = sample.reshape(len(bands), -1).astype(np.float64)
    ok = np.isfinite(sample).all(0) & ((sample != nodata).any(0) if nodata is not None else True)
    lo, hi = (np.percentile(sample[:, ok], [2, 98], axis=1) if ok.any() else (np.zeros(len(bands)),
              np.ones(len(bands))))
    return bands, lo, np.maximum(hi, lo + 1e-9), nodata


def tile(scene: Scene, layer: str, z: int, x: int, y: int) -> bytes:
    path = scene.layers.get(layer)
    if path is None:
        raise RsSegError(f"scene '{scene.name}' has no {layer} layer")
    if layer == "image":
        bands, lo, hi, nodata = _stretch(path)
        got = _read(path, scene, z, x, y, bands, Resampling.average)
        if got is None:
            return empty_tile()
        data, size = got
        scaled = (data.astype(np.float64) - lo[:, None, None]) / (hi - lo)[:, None, None]
        rgb = np.nan_to_num(np.clip(scaled, 0, 1) * 255).astype(np.uint8)
        rgb = np.repeat(rgb, 3, axis=0) if rgb.shape[0] == 1 else rgb
        alpha = np.full(data.shape[1:], 255, np.uint8)
        if nodata is not None:
            alpha[(data == nodata).all(0)] = 0
        return _png(np.dstack([*rgb, alpha]), size)
    got = _read(path, scene, z, x, y, [1])
    if got is None:
        return empty_tile()
    data, size = got
    values = data[0].astype(np.int64).clip(0, 255)
    if layer == "classes":
        lut = np.zeros((256, 4), np.uint8)
        lut[: len(scene.colors), :3] = scene.colors
        lut[: len(scene.colors), 3] = 255
        return _png(lut[values], size)
    return _png(RAMP[values], size)


def pixel(scene: Scene, col: int, row: int) -> dict:
    """The class, class probabilities and confidence at one map pixel."""
    if not (0 <= col < scene.width and 0 <= row < scene.height):
        raise RsSegError(f"pixel ({col}, {row}) is outside the {scene.width} x {scene.height} map")
    window = Window(col, row, 1, 1)
    out = {"col": col, "row": row}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(scene.layers["classes"]) as src:
            value = int(src.read(1, window=window)[0, 0])
            out["x"], out["y"] = src.xy(row, col)
        out["class"] = scene.names[value] if value < len(scene.names) else None
        out["class_index"] = value if value < len(scene.names) else None
        if "probabilities" in scene.layers:
            with rasterio.open(scene.layers["probabilities"]) as src:
                p = src.read(window=window)[:, 0, 0].astype(float)
            out["probabilities"] = {n: (None if v == 255 else round(v / 254, 4))
                                    for n, v in zip(scene.names, p)}
        if "confidence" in scene.layers:
            with rasterio.open(scene.layers["confidence"]) as src:
                v = int(src.read(1, window=window)[0, 0])
            out["confidence"] = None if v == 255 else round(v / 254, 4)
    return out
