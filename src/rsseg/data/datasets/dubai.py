"""Semantic segmentation of aerial imagery of Dubai (MBRSC / Humans in the Loop).

Layout::

    Tile 1/images/image_part_001.jpg   Tile 1/masks/image_part_001.png   (tiles 1..8, 9 parts each)

The classes.json shipped with the dataset lists colours that do not occur in the masks; the
masks use the colours below (../shared/data/README.md). Some masks are palette PNGs (decoded
through their colour map). "unlabeled" is an ignored class and pure black (thin borders) is
no label. Scene id ``Tile 3/image_part_004``, group ``Tile 3``: the parts of a tile are
neighbours, so splits are by tile; the official (recommended) split is tiles 1-5 train,
6 validation, 7 test (other tiles, e.g. 8 of the Kaggle copy, go to train).
"""

from __future__ import annotations

import re

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.data.codecs import ColorCodec, MaskCodec
from rsseg.data.datasets.base import Scene, Source
from rsseg.data.datasets.tables import table
from rsseg.errors import RsSegError

DUBAI_CLASSES = [
    ("building", (60, 16, 152)),
    ("land", (132, 41, 246)),
    ("road", (110, 193, 228)),
    ("vegetation", (254, 221, 58)),
    ("water", (226, 169, 41)),
    ("unlabeled", (155, 155, 155)),
]
DUBAI_SPLIT = {"Tile 6": "val", "Tile 7": "test"}


class DubaiSource(Source):
    name = "dubai"

    def class_table(self) -> ClassTable:
        names, colors = [n for n, _ in DUBAI_CLASSES], [c for _, c in DUBAI_CLASSES]
        return table(names, colors, ignore=(names.index("unlabeled"),))

    def make_codec(self) -> MaskCodec:
        colors = {c: i for i, (_, c) in enumerate(DUBAI_CLASSES)}
        return ColorCodec({**colors, (0, 0, 0): IGNORE_INDEX}, self.cfg.unknown_colors)

    def list_scenes(self) -> list[Scene]:
        tiles = sorted(p for p in self.root.glob("Tile *") if p.is_dir() and re.fullmatch(r"Tile \d+", p.name))
        if not tiles:
            raise RsSegError(f"{self.root}: expected 'Tile N/images' and 'Tile N/masks' folders")
        scenes = []
        for tile in tiles:
            for image in sorted((tile / "images").glob("*.jpg")):
                mask = tile / "masks" / f"{image.stem}.png"
                if not mask.exists():
                    self.bad(image, f"no mask {mask}", f"{tile.name}/{image.stem}")
                    continue
                scenes.append(Scene(image, mask, f"{tile.name}/{image.stem}", tile.name))
        return scenes

    def official_split(self, scene: Scene) -> str | None:
        return DUBAI_SPLIT.get(scene.group, "train")

    def default_band_names(self) -> list[str] | None:
        return ["red", "green", "blue"]
