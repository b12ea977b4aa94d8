"""Fake generic folder datasets.

``make``: the split-folder layout ``{train,val,test}/{images,masks}`` with index masks and an
rsseg classes.json. ``make_rgb``: one flat folder of ``*_img.png`` / ``*_lbl.png`` RGB-coded
pairs with a classes.json in the ``{"classes": [...]}`` form.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fakedata._io import colorize, image, labels, write_png, write_tif

NAMES = ["field", "forest", "water"]
COLORS = [(250, 200, 0), (0, 120, 0), (0, 0, 250)]


def make(root: Path) -> Path:
    root = Path(root)
    for s, (split, count) in enumerate({"train": 3, "val": 1, "test": 1}.items()):
        for k in range(count):
            seed = s * 10 + k
            write_tif(root / split / "images" / f"s{seed}.tif", image(seed, 40, 40))
            write_tif(root / split / "masks" / f"s{seed}.tif", labels(seed, 40, 40, [0, 1, 2, 255]).astype(np.uint8))
    (root / "classes.json").write_text(json.dumps({"names": NAMES, "colors": COLORS}))
    return root


def make_rgb(root: Path) -> Path:
    root = Path(root)
    for k in range(4):
        write_png(root / "pairs" / f"area{k}_img.png", np.moveaxis(image(k, 24, 24), 0, -1))
        rgb = colorize(labels(k, 24, 24, [0, 1, 2, 3]), [*COLORS, (0, 0, 0)])
        write_png(root / "pairs" / f"area{k}_lbl.png", rgb)
    classes = [{"name": n, "color": "#{:02x}{:02x}{:02x}".format(*c)} for n, c in zip(NAMES, COLORS, strict=True)]
    (root / "classes.json").write_text(json.dumps({"classes": classes, "nodata": ["#000000"]}))
    return root
