"""Fake Dubai aerial: ``Tile N/images/image_part_00K.jpg`` + ``Tile N/masks/image_part_00K.png``.

Tiles 1-7, two parts each; tile sizes differ, parts of a tile share one. Tile 2's masks are
palette PNGs (as in the real data); one mask of tile 3 has black border pixels. The shipped
classes.json lists the wrong colours, as the real one does.
"""

from __future__ import annotations

import json
from pathlib import Path

from fakedata._io import colorize, image, labels, write_jpg, write_png

COLORS = [(60, 16, 152), (132, 41, 246), (110, 193, 228), (254, 221, 58), (226, 169, 41), (155, 155, 155)]
SIZES = {1: (40, 48), 2: (36, 40), 3: (44, 40), 4: (48, 52), 5: (40, 44), 6: (36, 36), 7: (52, 48)}
WRONG = {"classes": [{"title": "Water", "color": "#50E3C2"}, {"title": "Building", "color": "#D0021B"}]}


def make(root: Path) -> Path:
    root = Path(root)
    for tile, (h, w) in SIZES.items():
        for part in (1, 2):
            seed = tile * 10 + part
            name = f"image_part_{part:03d}"
            write_jpg(root / f"Tile {tile}" / "images" / f"{name}.jpg", image(seed, h, w))
            index = labels(seed, h, w, list(range(6)))
            mask_path = root / f"Tile {tile}" / "masks" / f"{name}.png"
            if tile == 2:
                write_png(mask_path, index.astype("uint8"), palette=COLORS)
            else:
                rgb = colorize(index, COLORS)
                if tile == 3 and part == 1:
                    rgb[0, :] = 0  # black border: no label
                write_png(mask_path, rgb)
    (root / "classes.json").write_text(json.dumps(WRONG))
    return root
