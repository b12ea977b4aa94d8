"""Fake LandCover.ai: ``images/*.tif``, ``masks/*.tif`` (0..4), split lists and ``output/`` chips.

The chips are what the dataset's split.py writes: ``<scene>_<k>.jpg`` and ``<scene>_<k>_m.png``
(3-channel grey masks); train.txt/val.txt/test.txt name chips of both scenes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fakedata._io import image, labels, write_jpg, write_png, write_tif

SCENES = ["M-33-20-D-c-4-2", "M-34-5-A-d-1-1", "N-33-60-D-c-4-2"]
CHIP = 16


def make(root: Path) -> Path:
    root = Path(root)
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for s, name in enumerate(SCENES):
        img, msk = image(s, 32, 48), labels(s, 32, 48, list(range(5))).astype(np.uint8)
        write_tif(root / "images" / f"{name}.tif", img)
        write_tif(root / "masks" / f"{name}.tif", msk)
        k = 0
        for y in range(0, 32, CHIP):
            for x in range(0, 48, CHIP):
                chip = f"{name}_{k}"
                write_jpg(root / "output" / f"{chip}.jpg", img[:, y : y + CHIP, x : x + CHIP])
                tile = msk[y : y + CHIP, x : x + CHIP]
                write_png(root / "output" / f"{chip}_m.png", np.stack([tile] * 3, axis=-1))
                lists[("train", "train", "val", "test")[k % 4]].append(chip)
                k += 1
    for split, names in lists.items():
        (root / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root
