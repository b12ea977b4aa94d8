"""Fake DeepGlobe Land Cover: ``train/<id>_sat.jpg`` + ``train/<id>_mask.png``, unlabelled ``valid/``.

Mask colours carry small compression-like errors (e.g. 250 for 255), which the challenge
says to binarise at 128.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fakedata._io import colorize, image, labels, write_jpg, write_png

COLORS = [(0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)]
IDS = [100694, 102122, 10452, 104113, 105036]


def make(root: Path) -> Path:
    root = Path(root)
    for k, scene in enumerate(IDS):
        write_jpg(root / "train" / f"{scene}_sat.jpg", image(k, 40, 40))
        rgb = colorize(labels(k, 40, 40, list(range(7))), COLORS).astype(np.int16)
        noise = np.random.default_rng(k).integers(0, 6, size=rgb.shape)
        rgb = np.where(rgb > 127, rgb - noise, rgb + noise).astype(np.uint8)
        write_png(root / "train" / f"{scene}_mask.png", rgb)
    write_jpg(root / "valid" / "999_sat.jpg", image(99, 40, 40))
    return root
