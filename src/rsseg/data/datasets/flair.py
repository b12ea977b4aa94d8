"""FLAIR #1 (IGN, Garioud et al. 2023): 512 x 512 aerial patches, 20 cm, 5 bands.

Official layout (train and test archives; the toy dataset has the same tree)::

    flair_aerial_train/D006_2020/Z10_UA/img/IMG_000001.tif    R, G, B, NIR, elevation (uint8)
    flair_labels_train/D006_2020/Z10_UA/msk/MSK_000001.tif    values 1..19
    flair_1_aerial_test/...                flair_1_labels_test/...

Classes: ``variant: baseline`` (default) follows the challenge and its baselines, 12 classes
plus "other" (values 13..19 merged); ``variant: full`` keeps all 19. Groups are the domains
(``D006_2020``, a French department and year): patches of one domain never straddle splits.
Split: folders whose name contains "test" are the test split; validation domains are carved
from the training domains (seeded).
"""

from __future__ import annotations

from pathlib import Path

from rsseg.classes import ClassTable
from rsseg.config.data import parse_color
from rsseg.data.codecs import IndexCodec, MaskCodec
from rsseg.data.datasets.base import Scene, Source, pair_files
from rsseg.data.datasets.tables import table
from rsseg.errors import RsSegError

FLAIR_CLASSES = [
    ("building", "#db0e9a"), ("pervious surface", "#938e7b"), ("impervious surface", "#f80c00"),
    ("bare soil", "#a97101"), ("water", "#1553ae"), ("coniferous", "#194a26"),
    ("deciduous", "#46e483"), ("brushwood", "#f3a60d"), ("vineyard", "#660082"),
    ("herbaceous vegetation", "#55ff00"), ("agricultural land", "#fff30d"), ("plowed land", "#e4df7c"),
    ("swimming pool", "#3de6eb"), ("snow", "#ffffff"), ("clear cut", "#8ab3a0"),
    ("mixed", "#6b714f"), ("ligneous", "#c5dc42"), ("greenhouse", "#9999ff"), ("other", "#000000"),
]
BASELINE_CLASSES = 12  # values 1..12 kept, 13..19 -> "other"


class FLAIR1Source(Source):
    name = "flair1"

    @property
    def full(self) -> bool:
        if self.cfg.variant not in (None, "baseline", "full"):
            raise RsSegError(f"data.variant for flair1 is 'baseline' or 'full', not '{self.cfg.variant}'")
        return self.cfg.variant == "full"

    def class_table(self) -> ClassTable:
        kept = FLAIR_CLASSES if self.full else [*FLAIR_CLASSES[:BASELINE_CLASSES], FLAIR_CLASSES[-1]]
        return table([n for n, _ in kept], [parse_color(c) for _, c in kept])

    def make_codec(self) -> MaskCodec:
        if self.full:
            values = {v: v - 1 for v in range(1, len(FLAIR_CLASSES) + 1)}
        else:
            values = {v: min(v, BASELINE_CLASSES + 1) - 1 for v in range(1, len(FLAIR_CLASSES) + 1)}
        return IndexCodec(values, self.cfg.unknown_colors)

    def list_scenes(self) -> list[Scene]:
        images = sorted(self.root.rglob("img/IMG_*.tif"))
        if not images:
            raise RsSegError(f"{self.root}: no FLAIR patches (<domain>/<zone>/img/IMG_*.tif) found")
        masks = sorted(self.root.rglob("msk/MSK_*.tif"))
        pairs = pair_files(self, images, masks, _number, _number)
        return [Scene(i, m, i.stem, _domain(i)) for i, m in pairs]

    def official_split(self, scene: Scene) -> str | None:
        rel = Path(scene.image).relative_to(self.root) if Path(scene.image).is_relative_to(self.root) else scene.image
        return "test" if any("test" in part.lower() for part in Path(rel).parts[:-1]) else "trainval"

    def default_band_names(self) -> list[str] | None:
        return ["red", "green", "blue", "nir", "elevation"]


def _number(path: Path) -> str:
    return path.stem.split("_", 1)[-1]


def _domain(image: Path) -> str:
    """``.../D006_2020/Z10_UA/img/IMG_1.tif`` -> ``D006_2020``."""
    parts = image.parts
    return parts[-4] if len(parts) >= 4 else image.stem
