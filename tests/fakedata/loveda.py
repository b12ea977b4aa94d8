"""Fake LoveDA: ``{Train,Val,Test}/{Urban,Rural}/images_png/N.png`` (+ ``masks_png`` but Test).

Masks: 0 no-data, 1..7 classes. Train 2 + 2, Val 1 + 1, Test 1 + 1 (unlabelled) scenes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fakedata._io import image, labels, write_png

COUNTS = {"Train": 2, "Val": 1, "Test": 1}


def make(root: Path) -> Path:
    root = Path(root)
    n = 0
    for split, count in COUNTS.items():
        for domain in ("Urban", "Rural"):
            for _ in range(count):
                n += 1
                folder = root / split / domain
                write_png(folder / "images_png" / f"{n}.png", np.moveaxis(image(n, 32, 32), 0, -1))
                if split != "Test":
                    write_png(folder / "masks_png" / f"{n}.png", labels(n, 32, 32, list(range(8))).astype(np.uint8))
    return root
