"""Writers shared by the fake datasets."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning


def labels(seed: int, h: int, w: int, values: list[int], block: int = 8) -> np.ndarray:
    """(h, w) map of ``values`` in ``block``-pixel squares; every value occurs when it fits."""
    rng = np.random.default_rng(seed)
    gh, gw = -(-h // block), -(-w // block)
    cells = rng.choice(values, size=(gh, gw))
    flat = cells.ravel()
    flat[: min(len(values), flat.size)] = values[: flat.size]  # each value at least once
    return np.kron(cells, np.ones((block, block), dtype=cells.dtype))[:h, :w]


def image(seed: int, h: int, w: int, bands: int = 3, dtype=np.uint8, high: int = 255) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high + 1, size=(bands, h, w)).astype(dtype)


def colorize(index: np.ndarray, colors: list[tuple[int, int, int]]) -> np.ndarray:
    """(h, w) indices -> (h, w, 3) uint8 colours."""
    return np.asarray(colors, dtype=np.uint8)[index]


def write_tif(path: Path, data: np.ndarray, *, descriptions: list[str] | None = None,
              nodata: float | None = None, tiled: bool = False) -> Path:
    """(C, H, W) or (H, W) array -> GeoTIFF (not georeferenced unless it matters)."""
    data = data[None] if data.ndim == 2 else data
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "height": data.shape[1], "width": data.shape[2], "count": data.shape[0],
               "dtype": data.dtype.name, "nodata": nodata}
    if tiled:
        profile.update(tiled=True, blockxsize=16, blockysize=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            for i, name in enumerate(descriptions or []):
                dst.set_band_description(i + 1, name)
    return path


def write_rgb_tif(path: Path, rgb: np.ndarray) -> Path:
    """(H, W, 3) -> 3-band GeoTIFF."""
    return write_tif(path, np.moveaxis(rgb, -1, 0))


def write_png(path: Path, data: np.ndarray, palette: list[tuple[int, int, int]] | None = None) -> Path:
    """(H, W) grey / palette indices or (H, W, 3) RGB -> PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.ascontiguousarray(data)
    if palette is not None:
        img = Image.frombytes("P", (data.shape[1], data.shape[0]), data.astype(np.uint8).tobytes())
        img.putpalette([v for rgb in palette for v in rgb])
    else:
        img = Image.fromarray(data)
    img.save(path)
    return path


def write_jpg(path: Path, chw: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(np.moveaxis(chw, 0, -1))).save(path, quality=95)
    return path
