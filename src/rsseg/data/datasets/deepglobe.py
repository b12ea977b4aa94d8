"""DeepGlobe Land Cover Classification (Demir et al. 2018): 2448 x 2448 RGB, 50 cm.

Layout (challenge archive and its Kaggle copy)::

    train/<id>_sat.jpg  train/<id>_mask.png     803 labelled scenes, RGB-coded masks
    valid/<id>_sat.jpg  test/<id>_sat.jpg       unlabelled (no masks published)

Seven colours: urban (0,255,255), agriculture (255,255,0), rangeland (255,0,255), forest
(0,255,0), water (0,0,255), barren (255,255,255), unknown (0,0,0, an ignored class). As the
challenge instructs, each mask channel is binarised at 128 before the lookup (the masks carry
compression noise). Only labelled scenes are used; without a labelled official val/test
split they are split by seeded ratios (or ``data.split``), each scene its own group.
"""

from __future__ import annotations

from rsseg.classes import ClassTable
from rsseg.data.codecs import ColorCodec, MaskCodec
from rsseg.data.datasets.base import Scene, Source
from rsseg.data.datasets.tables import table
from rsseg.errors import RsSegError

DEEPGLOBE_CLASSES = [
    ("urban land", (0, 255, 255)),
    ("agriculture land", (255, 255, 0)),
    ("rangeland", (255, 0, 255)),
    ("forest land", (0, 255, 0)),
    ("water", (0, 0, 255)),
    ("barren land", (255, 255, 255)),
    ("unknown", (0, 0, 0)),
]


class DeepGlobeSource(Source):
    name = "deepglobe"

    def class_table(self) -> ClassTable:
        names, colors = [n for n, _ in DEEPGLOBE_CLASSES], [c for _, c in DEEPGLOBE_CLASSES]
        return table(names, colors, ignore=(len(names) - 1,))

    def make_codec(self) -> MaskCodec:
        colors = {c: i for i, (_, c) in enumerate(DEEPGLOBE_CLASSES)}
        return ColorCodec(colors, self.cfg.unknown_colors, threshold=128)

    def list_scenes(self) -> list[Scene]:
        images = sorted(self.root.rglob("*_sat.jpg"))
        if not images:
            raise RsSegError(f"{self.root}: no DeepGlobe images (<id>_sat.jpg) found")
        scenes = []
        for image in images:
            scene_id = image.stem.removesuffix("_sat")
            mask = image.with_name(f"{scene_id}_mask.png")
            if mask.exists():  # valid/ and test/ are unlabelled by design: not an error
                scenes.append(Scene(image, mask, scene_id))
        if not scenes:
            raise RsSegError(f"{self.root}: DeepGlobe images found but no <id>_mask.png beside them")
        return scenes

    def default_band_names(self) -> list[str] | None:
        return ["red", "green", "blue"]
