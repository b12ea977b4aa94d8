"""ISPRS 2D semantic labelling benchmarks: Potsdam (5 cm, 6000 px) and Vaihingen (9 cm, IRRG).

Two layouts are read, chosen by what is under ROOT:

- the official archives (RGB-coded label tifs; folders found at any depth)::

      Potsdam:   2_Ortho_RGB/top_potsdam_2_10_RGB.tif (``data.images`` picks RGBIR/IRRG)
                 5_Labels_all_noBoundary/top_potsdam_2_10_label_noBoundary.tif (else 5_Labels_all/)
      Vaihingen: top/top_mosaic_09cm_area1.tif
                 top_mosaic_09cm_area1_noBoundary.tif (eroded GT; else gts_for_participants/)

  The eroded ("noBoundary") labels are preferred, as in the benchmark's evaluation and in
  mmsegmentation; their black boundary pixels are no label.
- the mmsegmentation form ``img_dir/{train,val}/*.png`` + ``ann_dir/...`` (or flat, as in
  ../shared/data/isprs-sample): index masks 0 no label, 1..6 the classes below.

Classes: impervious surfaces, building, low vegetation, tree, car, clutter. Groups are the
benchmark tiles (``2_10``, ``area1``; mmseg chips ``2_10_0_0_512_512`` belong to ``2_10``).
Split: the benchmark's test tiles are the test split; validation tiles are carved from the
training tiles (seeded). Tiles in neither list are left out.
"""

from __future__ import annotations

import re
from pathlib import Path

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.data.codecs import ColorCodec, IndexCodec, MaskCodec
from rsseg.data.datasets.base import Scene, Source, pair_files, relative_id
from rsseg.data.datasets.tables import table
from rsseg.errors import RsSegError

ISPRS_CLASSES = [
    ("impervious surfaces", (255, 255, 255)),
    ("building", (0, 0, 255)),
    ("low vegetation", (0, 255, 255)),
    ("tree", (0, 255, 0)),
    ("car", (255, 255, 0)),
    ("clutter", (255, 0, 0)),
]
POTSDAM_TRAIN = ["2_10", "2_11", "2_12", "3_10", "3_11", "3_12", "4_10", "4_11", "4_12", "5_10", "5_11", "5_12", "6_7", "6_8", "6_9", "6_10", "6_11", "6_12", "7_7", "7_8", "7_9", "7_10", "7_11", "7_12"]
POTSDAM_TEST = ["2_13", "2_14", "3_13", "3_14", "4_13", "4_14", "4_15", "5_13", "5_14", "5_15", "6_13", "6_14", "6_15", "7_13"]
VAIHINGEN_TRAIN = [f"area{n}" for n in (1, 3, 5, 7, 11, 13, 15, 17, 21, 23, 26, 28, 30, 32, 34, 37)]
VAIHINGEN_TEST = [f"area{n}" for n in (2, 4, 6, 8, 10, 12, 14, 16, 20, 22, 24, 27, 29, 31, 33, 35, 38)]
_CHIP = re.compile(r"^(.*?)_\d+_\d+_\d+_\d+$")


class _ISPRSSource(Source):
    train_tiles: tuple[str, ...] = ()
    test_tiles: tuple[str, ...] = ()
    band_names_official: tuple[str, ...] = ()

    @property
    def mmseg(self) -> bool:
        return (self.root / "img_dir").is_dir()

    def class_table(self) -> ClassTable:
        return table([n for n, _ in ISPRS_CLASSES], [c for _, c in ISPRS_CLASSES])

    def make_codec(self) -> MaskCodec:
        if self.mmseg:
            return IndexCodec.shifted(len(ISPRS_CLASSES), self.cfg.unknown_colors)
        colors = {c: i for i, (_, c) in enumerate(ISPRS_CLASSES)}
        return ColorCodec({**colors, (0, 0, 0): IGNORE_INDEX}, self.cfg.unknown_colors)

    def list_scenes(self) -> list[Scene]:
        return self._mmseg_scenes() if self.mmseg else self._official_scenes()

    def _mmseg_scenes(self) -> list[Scene]:
        img_dir, ann_dir = self.root / "img_dir", self.root / "ann_dir"
        images = sorted(img_dir.rglob("*.png"))
        masks = sorted(ann_dir.rglob("*.png")) if ann_dir.is_dir() else []

        def key(root: Path):
            return lambda p: p.relative_to(root).with_suffix("").as_posix()

        pairs = pair_files(self, images, masks, key(img_dir), key(ann_dir))
        return [Scene(i, m, relative_id(i, img_dir), _tile_of_chip(i.stem)) for i, m in pairs]

    def _official_scenes(self) -> list[Scene]:
        images = self._official_images()
        if not images:
            raise RsSegError(f"{self.root}: no {self.name} images found (official archive or img_dir/ + ann_dir/)")
        masks = self._official_labels()
        pairs = pair_files(self, images, masks, self.tile_id, self.tile_id)
        return [Scene(i, m, self.tile_id(i)) for i, m in pairs]

    def official_split(self, scene: Scene) -> str | None:
        if scene.group in self.test_tiles:
            return "test"
        return "trainval" if scene.group in self.train_tiles else None

    def tile_id(self, path: Path) -> str:
        raise NotImplementedError

    def _official_images(self) -> list[Path]:
        raise NotImplementedError

    def _official_labels(self) -> list[Path]:
        raise NotImplementedError

    def default_band_names(self) -> list[str] | None:
        return list(self.band_names_official)


class PotsdamSource(_ISPRSSource):
    name = "potsdam"
    train_tiles, test_tiles = POTSDAM_TRAIN, POTSDAM_TEST

    def tile_id(self, path: Path) -> str:
        match = re.search(r"top_potsdam_(\d+_\d+)_", Path(path).name)
        return match.group(1) if match else Path(path).stem

    def _official_images(self) -> list[Path]:
        return sorted(self.root.rglob(self.cfg.images or "top_potsdam_*_RGB.tif"))

    def _official_labels(self) -> list[Path]:
        return sorted(self.root.rglob("top_potsdam_*_label_noBoundary.tif")) or sorted(
            self.root.rglob("top_potsdam_*_label.tif")
        )

    def default_band_names(self) -> list[str] | None:
        if self.mmseg:
            return ["red", "green", "blue"]
        names = {"RGB": ["red", "green", "blue"], "RGBIR": ["red", "green", "blue", "nir"],
                 "IRRG": ["nir", "red", "green"]}
        images = self._official_images()
        return names.get(images[0].stem.rsplit("_", 1)[-1]) if images else None


class VaihingenSource(_ISPRSSource):
    name = "vaihingen"
    train_tiles, test_tiles = VAIHINGEN_TRAIN, VAIHINGEN_TEST
    band_names_official = ("nir", "red", "green")

    def tile_id(self, path: Path) -> str:
        match = re.search(r"(area\d+)", Path(path).name)
        return match.group(1) if match else Path(path).stem

    def _official_images(self) -> list[Path]:
        if self.cfg.images:
            return sorted(self.root.rglob(self.cfg.images))
        return sorted(p for p in self.root.rglob("top_mosaic_09cm_area*.tif") if p.parent.name == "top")

    def _official_labels(self) -> list[Path]:
        labels = [p for p in self.root.rglob("top_mosaic_09cm_area*.tif") if p.parent.name != "top"]
        eroded = [p for p in labels if p.stem.endswith("_noBoundary")]
        return sorted(eroded or labels)


def _tile_of_chip(stem: str) -> str:
    match = _CHIP.match(stem)
    return match.group(1) if match else stem
