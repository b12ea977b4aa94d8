"""The small outputs: colour PNG, image/map blend PNG and the class-area JSON.

PNGs are nearest-neighbour overviews of at most ``max_side`` px a side, collected from the
rows as they stream past, so they cost ``max_side²`` bytes per band whatever the scene.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.infer.reader import SceneInfo
from rsseg.infer.writers import write_error
from rsseg.io import atomic_path, atomic_write_text

#: Longest side of the PNG previews; larger scenes get a nearest-neighbour overview.
MAX_PREVIEW = 2048


def overview_step(h: int, w: int, max_side: int = MAX_PREVIEW) -> int:
    return max(1, math.ceil(max(h, w) / max_side))


class Preview:
    """Every ``step``-th row and column of the class map and of the image's display bands."""

    def __init__(self, info: SceneInfo, max_side: int = MAX_PREVIEW) -> None:
        self.step = s = overview_step(info.height, info.width, max_side)
        hs, ws = math.ceil(info.height / s), math.ceil(info.width / s)
        self.classes = np.full((hs, ws), IGNORE_INDEX, dtype=np.uint8)
        self.rgb_bands = [0, 1, 2] if info.count >= 3 else [0, 0, 0]
        self.image = np.zeros((3, hs, ws), dtype=np.dtype(info.dtype))

    def add(self, y0: int, classes: np.ndarray, raw: np.ndarray) -> None:
        s = self.step
        first = -y0 % s  # first row of the chunk on the overview grid
        if first >= classes.shape[0]:
            return
        rows = slice(first, None, s)
        r0 = (y0 + first) // s
        small = classes[rows, ::s]
        self.classes[r0 : r0 + small.shape[0]] = small
        self.image[:, r0 : r0 + small.shape[0]] = raw[self.rgb_bands][:, rows, ::s]

    def write(self, classes: ClassTable, color_path: Path, blend_path: Path) -> None:
        """Colour map as a palette PNG (the class colours, nodata black), blend as RGB."""
        save_png(self.classes, color_path, palette=classes.palette())
        valid = self.classes != IGNORE_INDEX
        rgb = to_rgb8(self.image, valid)
        if np.shares_memory(rgb, self.image):  # blended in place below
            rgb = rgb.copy()
        blend_into(rgb, classes.palette(), self.classes, valid)
        save_png(rgb, blend_path)


def blend_into(rgb: np.ndarray, palette: np.ndarray, classes: np.ndarray, valid: np.ndarray,
               rows: int = 256) -> None:
    """``rgb`` <- the mean of ``rgb`` and the class colours, rounded half to even (what
    ``np.round(0.5 * a + 0.5 * b)`` gives), where ``valid``; in integers, a few rows at a
    time: float32 copies of a 2048 px preview were +150 MB at the end of every scene."""
    for r0 in range(0, rgb.shape[0], rows):
        a = rgb[r0 : r0 + rows]
        s = a.astype(np.uint16)
        s += palette[classes[r0 : r0 + rows]]
        q = s >> 1
        q += s & q & 1  # .5 rounds to the even neighbour
        np.copyto(a, q.astype(np.uint8), where=valid[r0 : r0 + rows, :, None])


def save_png(arr: np.ndarray, path: Path, palette: np.ndarray | None = None) -> None:
    """Atomic PNG; zlib level 1 (measured: blend of 2048² px 0.5 s, 14 % larger, against
    2.6 s at PIL's default level 6, which was a fifth of a fast-mode run of that scene)."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(arr))
    if palette is not None:
        image.putpalette(palette.astype(np.uint8).ravel().tolist())
    def readable(tmp: Path) -> None:  # a PNG cut short fails its chunks' CRCs
        with Image.open(tmp) as back:
            back.verify()
            if back.size != image.size:
                raise OSError(f"the PNG reads back as {back.size}, not {image.size}")

    try:
        with atomic_path(path, verify=readable) as tmp:
            image.save(tmp, format="PNG", compress_level=1)
    except (OSError, SyntaxError) as exc:  # PIL's verify raises SyntaxError for broken chunks
        raise write_error(path, exc) from exc


def to_rgb8(bands: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """(3, H, W) raw -> (H, W, 3) uint8; non-8-bit data stretched from 2 to 98 %."""
    if bands.dtype == np.uint8:
        return np.ascontiguousarray(bands.transpose(1, 2, 0))
    rgb = np.zeros(bands.shape[1:] + (3,), dtype=np.uint8)
    for b in range(3):
        band = bands[b].astype(np.float64)
        sample = band[valid] if valid is not None else band
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            continue
        lo, hi = np.percentile(sample, [2, 98])
        scaled = (band - lo) / (hi - lo) if hi > lo else np.zeros_like(band)
        rgb[..., b] = np.nan_to_num(np.clip(scaled, 0, 1) * 255, nan=0).astype(np.uint8)
    return rgb


def write_areas(path: Path, info: SceneInfo, summary: dict, extra: dict) -> None:
    """The class-area summary as JSON (no timings or host names: reruns are byte-identical)."""
    doc = {
        "input": info.path.name if info.path else None,
        "width": info.width,
        "height": info.height,
        "crs": info.crs.to_string() if info.crs is not None else None,
        "pixel_size": [abs(info.transform.a), abs(info.transform.e)] if info.crs is not None else None,
        **extra,
        **summary,
    }
    try:
        atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    except OSError as exc:
        raise write_error(path, exc) from exc
