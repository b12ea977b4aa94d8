"""GID-15 (Gaofen Image Dataset, fine land-cover classification, Tong et al. 2020).

Layout of the "Fine Land-cover Classification_15classes" archive (found at ROOT or below)::

    image_RGB/GF2_PMS1__L1A0000647767-MSS1.tif          7200 x 6800, RGB (image_NirRGB: NIR,R,G,B)
    label_15classes/GF2_PMS1__L1A0000647767-MSS1_label.tif   RGB-coded labels

15 classes plus black "background" (unlabelled), which is an ignored class. There is no
official split: scenes are split by seeded ratios (or ``data.split`` lists); each scene is
its own group. ``data.images`` (a glob under ROOT) picks another image folder, e.g.
``"**/image_NirRGB/*.tif"``.
"""

from __future__ import annotations

from pathlib import Path

from rsseg.classes import ClassTable
from rsseg.data.codecs import ColorCodec, MaskCodec
from rsseg.data.datasets.base import Scene, Source, locate, pair_files
from rsseg.data.datasets.tables import table
from rsseg.errors import RsSegError

GID15_CLASSES = [
    ("background", (0, 0, 0)),
    ("industrial land", (200, 0, 0)),
    ("urban residential", (250, 0, 150)),
    ("rural residential", (200, 150, 150)),
    ("traffic land", (250, 150, 150)),
    ("paddy field", (0, 200, 0)),
    ("irrigated land", (150, 250, 0)),
    ("dry cropland", (150, 200, 150)),
    ("garden plot", (200, 0, 200)),
    ("arbor woodland", (150, 0, 250)),
    ("shrub land", (150, 150, 250)),
    ("natural grassland", (250, 200, 0)),
    ("artificial grassland", (200, 200, 0)),
    ("river", (0, 0, 200)),
    ("lake", (0, 150, 200)),
    ("pond", (0, 200, 250)),
]


class GID15Source(Source):
    name = "gid15"

    def class_table(self) -> ClassTable:
        return table([n for n, _ in GID15_CLASSES], [c for _, c in GID15_CLASSES], ignore=(0,))

    def make_codec(self) -> MaskCodec:
        return ColorCodec({c: i for i, (_, c) in enumerate(GID15_CLASSES)}, self.cfg.unknown_colors)

    def _images(self) -> list[Path]:
        if self.cfg.images:
            return sorted(p for p in self.root.glob(self.cfg.images) if p.is_file())
        folder = locate(self.root, "image_RGB")
        return sorted(folder.glob("*.tif")) if folder else []

    def list_scenes(self) -> list[Scene]:
        images = self._images()
        labels = locate(self.root, "label_15classes")
        if not images or labels is None:
            raise RsSegError(f"{self.root}: expected GID-15 folders image_RGB/ and label_15classes/ (at or below it)")
        masks = sorted(labels.glob("*_label.tif"))
        pairs = pair_files(self, images, masks, lambda p: p.stem, lambda p: p.stem.removesuffix("_label"))
        return [Scene(image, mask, image.stem) for image, mask in pairs]

    def default_band_names(self) -> list[str] | None:
        images = self._images()
        if images and "NirRGB" in images[0].parent.name:
            return ["nir", "red", "green", "blue"]
        return ["red", "green", "blue"]
