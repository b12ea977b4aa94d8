"""Fake GID-15: ``Fine Land-cover Classification_15classes/{image_RGB,label_15classes}``."""

from __future__ import annotations

from pathlib import Path

from fakedata._io import colorize, image, labels, write_rgb_tif, write_tif

COLORS = [
    (0, 0, 0), (200, 0, 0), (250, 0, 150), (200, 150, 150), (250, 150, 150), (0, 200, 0), (150, 250, 0),
    (150, 200, 150), (200, 0, 200), (150, 0, 250), (150, 150, 250), (250, 200, 0), (200, 200, 0),
    (0, 0, 200), (0, 150, 200), (0, 200, 250),
]
SCENES = [f"GF2_PMS1__L1A000064776{k}-MSS1" for k in range(5)]


def make(root: Path) -> Path:
    base = Path(root) / "Fine Land-cover Classification_15classes"
    for k, name in enumerate(SCENES):
        write_tif(base / "image_RGB" / f"{name}.tif", image(k, 40, 48), tiled=True)
        write_rgb_tif(base / "label_15classes" / f"{name}_label.tif", colorize(labels(k, 40, 48, list(range(16))), COLORS))
    return Path(root)
