"""Fake folder dataset with one scene per kind of problem ``rsseg data check`` must find.

Glob layout ``img/<id>.png|tif`` + ``lbl/<id>.png`` (RGB-coded field/forest/water, black = no
label). ``good0..good3`` are clean (good0 has a black no-label row); each ``BROKEN`` scene has
exactly the problem it is named after. ``CONFIG`` holds the matching ``data:`` settings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fakedata._io import colorize, image, labels, write_png, write_tif

NAMES = ["field", "forest", "water"]
COLORS = [(250, 200, 0), (0, 120, 0), (0, 0, 250)]
GOOD = ["good0", "good1", "good2", "good3"]
BROKEN = {  # scene id -> the problem kind `data check` reports
    "truncated": "truncated", "size": "size_mismatch", "colour": "unknown_values",
    "black": "empty_image", "nan": "nan", "bands": "band_count",
}
SIZE = 32
CONFIG = {
    "dataset": "folder", "images": "img/*", "masks": "lbl/*.png", "mask_encoding": "color",
    "classes": [{"name": n, "color": list(c)} for n, c in zip(NAMES, COLORS, strict=True)],
    "nodata_values": [[0, 0, 0]],
    "split": {"train": ["img/*[!3]"], "val": ["img/good3"]},  # every scene but good3 trains
}


def mask_rgb(seed: int, h: int = SIZE, w: int = SIZE) -> np.ndarray:
    return colorize(labels(seed, h, w, [0, 1, 2]), COLORS)


def make(root: Path) -> Path:
    root = Path(root)
    seeds = {name: k for k, name in enumerate([*GOOD, *BROKEN])}
    for name, seed in seeds.items():
        pixels = np.moveaxis(image(seed, SIZE, SIZE), 0, -1)
        rgb = mask_rgb(seed)
        if name == "good0":
            rgb[0] = 0  # a black (no label) row: a note, not an error
        if name == "size":
            rgb = mask_rgb(seed, SIZE, SIZE - 8)
        if name == "colour":
            rgb[:4, :4] = (1, 2, 3)
        if name == "black":
            pixels[:] = 0
        if name == "bands":
            pixels = np.moveaxis(image(seed, SIZE, SIZE, bands=4), 0, -1)
        if name == "nan":
            data = np.moveaxis(pixels, -1, 0).astype(np.float32)
            data[1, 5:7, 5:9] = np.nan
            write_tif(root / "img" / "nan.tif", data)
        else:
            write_png(root / "img" / f"{name}.png", pixels)
        write_png(root / "lbl" / f"{name}.png", rgb)
    cut = root / "img" / "truncated.png"
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    return root

