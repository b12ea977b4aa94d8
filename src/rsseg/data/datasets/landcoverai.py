"""LandCover.ai (Boguszewski et al. 2021): aerial orthophotos of Poland, 25/50 cm.

Layout of the official archive::

    images/M-33-20-D-c-4-2.tif      RGB orthophotos (41 scenes, ~9000 x 9500)
    masks/M-33-20-D-c-4-2.tif       index masks: 0 background, 1 building, 2 woodland, 3 water, 4 road
    train.txt val.txt test.txt      official split, naming 512 px chips "<scene>_<k>"
    output/<scene>_<k>.jpg, output/<scene>_<k>_m.png   the chips, written by the dataset's split.py

The official split names chips, and chips of one orthophoto fall into different splits. So:
with the split lists *and* the chips in output/ (``variant`` unset or ``chips``), the chips
are the scenes and the official split is used as published; otherwise (or with
``variant: scenes``) the orthophotos are the scenes, split by seeded ratios or
``data.split`` lists: the leak-free choice for measuring generalisation.
"""

from __future__ import annotations

from functools import cached_property

from rsseg.classes import ClassTable
from rsseg.data.codecs import IndexCodec, MaskCodec
from rsseg.data.datasets.base import Scene, Source, pair_files
from rsseg.data.datasets.tables import table
from rsseg.errors import RsSegError

LANDCOVERAI_CLASSES = [
    ("background", (255, 255, 255)),
    ("building", (200, 40, 40)),
    ("woodland", (40, 140, 50)),
    ("water", (40, 110, 220)),
    ("road", (150, 150, 150)),
]


class LandCoverAISource(Source):
    name = "landcoverai"

    def class_table(self) -> ClassTable:
        return table([n for n, _ in LANDCOVERAI_CLASSES], [c for _, c in LANDCOVERAI_CLASSES])

    def make_codec(self) -> MaskCodec:
        return IndexCodec.identity(len(LANDCOVERAI_CLASSES), self.cfg.unknown_colors)

    @cached_property
    def _lists(self) -> dict[str, str]:
        """Chip id -> official split, from train.txt/val.txt/test.txt when present."""
        out: dict[str, str] = {}
        for split in ("train", "val", "test"):
            path = self.root / f"{split}.txt"
            if path.is_file():
                for line in path.read_text().split():
                    out[line.strip()] = split
        return out

    @cached_property
    def use_chips(self) -> bool:
        if self.cfg.variant not in (None, "chips", "scenes"):
            raise RsSegError(f"data.variant for landcoverai is 'chips' or 'scenes', not '{self.cfg.variant}'")
        if self.cfg.variant == "scenes":
            return False
        has = bool(self._lists) and (self.root / "output").is_dir()
        if self.cfg.variant == "chips" and not has:
            raise RsSegError(f"{self.root}: variant chips needs train/val/test.txt and the output/ chips (run split.py)")
        return has

    def list_scenes(self) -> list[Scene]:
        if self.use_chips:
            out = self.root / "output"
            images = sorted(p for p in out.glob("*.jpg"))
            masks = sorted(out.glob("*_m.png"))
            pairs = pair_files(self, images, masks, lambda p: p.stem, lambda p: p.stem.removesuffix("_m"))
            return [Scene(i, m, i.stem) for i, m in pairs]
        images = sorted((self.root / "images").glob("*.tif"))
        if not images:
            raise RsSegError(f"{self.root}: expected LandCover.ai images/*.tif and masks/*.tif")
        masks = sorted((self.root / "masks").glob("*.tif"))
        pairs = pair_files(self, images, masks, lambda p: p.stem, lambda p: p.stem)
        return [Scene(i, m, i.stem) for i, m in pairs]

    def official_split(self, scene: Scene) -> str | None:
        if not self.use_chips:
            return None
        return self._lists.get(scene.id)

    def default_band_names(self) -> list[str] | None:
        return ["red", "green", "blue"]
