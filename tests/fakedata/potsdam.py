"""Fake ISPRS Potsdam, official archives: ``2_Ortho_RGB/top_potsdam_<id>_RGB.tif`` and
``5_Labels_all_noBoundary/top_potsdam_<id>_label_noBoundary.tif`` (RGB-coded, black boundaries).
``make_mmseg`` writes the mmsegmentation form (``img_dir``/``ann_dir``, 0 = boundary, 1..6).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fakedata._io import colorize, image, labels, write_png, write_rgb_tif, write_tif

COLORS = [(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0)]
TILES = ["2_10", "2_11", "3_10", "4_12", "6_7", "2_13", "7_13"]  # last two: benchmark test tiles


def make(root: Path) -> Path:
    root = Path(root)
    for k, tile in enumerate(TILES):
        write_tif(root / "2_Ortho_RGB" / f"top_potsdam_{tile}_RGB.tif", image(k, 40, 40), tiled=True)
        rgb = colorize(labels(k, 40, 40, list(range(6))), COLORS)
        rgb[:, 20] = 0  # an eroded boundary
        write_rgb_tif(root / "5_Labels_all_noBoundary" / f"top_potsdam_{tile}_label_noBoundary.tif", rgb)
    return root


def make_mmseg(root: Path) -> Path:
    root = Path(root)
    for k, tile in enumerate(TILES):
        split = "val" if tile in ("2_13", "7_13") else "train"
        for x in (0, 16):
            name = f"{tile}_{x}_0_{x + 16}_16"
            write_png(root / "img_dir" / split / f"{name}.png", np.moveaxis(image(k + x, 16, 16), 0, -1))
            write_png(root / "ann_dir" / split / f"{name}.png", labels(k + x, 16, 16, list(range(7))).astype(np.uint8))
    return root
