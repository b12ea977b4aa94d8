"""LoveDA (Wang et al. 2021): 1024 x 1024 RGB tiles, 0.3 m, urban and rural China.

Official layout::

    Train/{Urban,Rural}/images_png/1366.png   Train/{Urban,Rural}/masks_png/1366.png
    Val/...                                   Test/... (images only: no public masks)

and the mmsegmentation form ``img_dir/{train,val}/*.png`` + ``ann_dir/{train,val}/*.png``
(or flat ``img_dir/*.png`` + ``ann_dir/*.png``, as in ../shared/data/loveda-sample).
Masks: 0 no-data (ignored), 1..7 background, building, road, water, barren, forest,
agriculture (classes 0..6).

Split: the official Test has no labels, so the labelled official Val is our *test* split and
validation scenes are carved from Train (seeded, ``trainval``): model selection never sees
test scenes. The flat mmseg form has no split (seeded ratios or ``data.split``).
"""

from __future__ import annotations

from pathlib import Path

from rsseg.classes import ClassTable
from rsseg.data.codecs import IndexCodec, MaskCodec
from rsseg.data.datasets.base import Scene, Source, pair_files, relative_id
from rsseg.data.datasets.tables import table
from rsseg.errors import RsSegError

LOVEDA_CLASSES = [
    ("background", (255, 255, 255)),
    ("building", (255, 0, 0)),
    ("road", (255, 255, 0)),
    ("water", (0, 0, 255)),
    ("barren", (159, 129, 183)),
    ("forest", (0, 255, 0)),
    ("agriculture", (255, 195, 128)),
]
#: official (or mmseg) folder -> our split
LOVEDA_SPLITS = {"train": "trainval", "val": "test"}


class LoveDASource(Source):
    name = "loveda"

    def class_table(self) -> ClassTable:
        return table([n for n, _ in LOVEDA_CLASSES], [c for _, c in LOVEDA_CLASSES])

    def make_codec(self) -> MaskCodec:
        return IndexCodec.shifted(len(LOVEDA_CLASSES), self.cfg.unknown_colors)

    def list_scenes(self) -> list[Scene]:
        if (self.root / "img_dir").is_dir():
            return self._mmseg_scenes()
        images = sorted(self.root.glob("*/*/images_png/*.png"))
        if not images:
            raise RsSegError(f"{self.root}: expected LoveDA Train|Val/Urban|Rural/images_png/ or img_dir/ + ann_dir/")
        scenes = []
        for image in images:
            mask = image.parent.parent / "masks_png" / image.name
            if mask.exists():  # the official Test has no masks
                split, domain = image.parts[-4], image.parts[-3]
                scenes.append(Scene(image, mask, f"{split}/{domain}/{image.stem}"))
        return scenes

    def _mmseg_scenes(self) -> list[Scene]:
        img_dir, ann_dir = self.root / "img_dir", self.root / "ann_dir"
        images = sorted(p for p in img_dir.rglob("*.png"))
        masks = sorted(p for p in ann_dir.rglob("*.png")) if ann_dir.is_dir() else []

        def key(root: Path):
            return lambda p: p.relative_to(root).with_suffix("").as_posix()

        labelled = {key(ann_dir)(m) for m in masks}
        images = [i for i in images if key(img_dir)(i) in labelled or i.parent == img_dir]
        pairs = pair_files(self, images, masks, key(img_dir), key(ann_dir))
        return [Scene(i, m, relative_id(i, img_dir)) for i, m in pairs]

    def official_split(self, scene: Scene) -> str | None:
        first = scene.id.split("/", 1)[0].lower() if "/" in scene.id else ""
        return LOVEDA_SPLITS.get(first)

    def default_band_names(self) -> list[str] | None:
        return ["red", "green", "blue"]
