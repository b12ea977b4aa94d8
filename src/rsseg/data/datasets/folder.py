"""User-laid-out datasets: split folders, glob patterns, multispectral GeoTIFFs, synthetic.

- split folders (default): ``ROOT/{train,val,test}/<image_dir>/<image_glob>`` with masks of
  the same stem in ``<mask_dir>``; the folders are the official split.
- globs (``data.images`` and ``data.masks``, relative to ROOT): images and masks paired by
  stem (minus ``image_suffix``/``mask_suffix``); scene id = image path under ROOT without
  suffix; group = first group of ``data.group_pattern`` or the scene id; no official split
  (seeded ratios unless ``data.split`` lists scenes).

The class table is ``data.classes`` or a classes.json (``data.classes_file``, default
ROOT/classes.json); masks hold class values (``mask_encoding: index``) or colours (``color``).
"""

from __future__ import annotations

import re
from pathlib import Path

from rsseg.classes import ClassTable
from rsseg.data.codecs import MaskCodec
from rsseg.data.datasets.base import Scene, Source, pair_files, relative_id
from rsseg.data.datasets.tables import load_specs, specs_codec, specs_table
from rsseg.data.splits import SPLITS
from rsseg.errors import RsSegError


class FolderSource(Source):
    """Split folders or glob patterns; class table from the config or a classes.json."""

    name = "folder"
    fixed_classes = False

    def _specs(self):
        if self.cfg.classes is not None:
            return self.cfg.classes, "data.classes", []
        path = self.cfg.classes_file or self.root / "classes.json"
        specs, nodata = load_specs(path)
        return specs, str(path), nodata

    def class_table(self) -> ClassTable:
        return specs_table(self._specs()[0])

    def make_codec(self) -> MaskCodec:
        specs, where, nodata = self._specs()
        cfg = self.cfg
        if nodata and all(isinstance(v, str) for v in cfg.nodata_values):  # only image nan/inf set
            cfg = cfg.model_copy(update={"nodata_values": [*cfg.nodata_values, *nodata]})
        return specs_codec(specs, cfg, where)

    def list_scenes(self) -> list[Scene]:
        if self.cfg.images is not None:
            return self._glob_scenes()
        scenes: list[Scene] = []
        for split in SPLITS:
            image_dir = self.root / split / self.cfg.image_dir
            mask_dir = self.root / split / self.cfg.mask_dir
            images = sorted(image_dir.glob(self.cfg.image_glob)) if image_dir.is_dir() else []
            masks = sorted(p for p in mask_dir.glob("*") if p.is_file()) if mask_dir.is_dir() else []
            for image, mask in pair_files(self, images, masks, _stem, _stem):
                scenes.append(self._scene(image, mask, f"{split}/{image.stem}"))
        if not scenes:
            raise RsSegError(
                f"no images matching '{self.cfg.image_glob}' in {self.root}/{{train,val,test}}/{self.cfg.image_dir}"
            )
        return scenes

    def _glob_scenes(self) -> list[Scene]:
        cfg = self.cfg
        if cfg.masks is None:
            raise RsSegError("data.images is set but data.masks is not: give a glob for the masks too")
        images = sorted(p for p in self.root.glob(cfg.images) if p.is_file())  # type: ignore[arg-type]
        masks = sorted(p for p in self.root.glob(cfg.masks) if p.is_file())
        if not images:
            raise RsSegError(f"no images matching data.images '{cfg.images}' under {self.root}")
        pairs = pair_files(self, images, masks, _key(cfg.image_suffix), _key(cfg.mask_suffix))
        return [self._scene(image, mask, relative_id(image, self.root)) for image, mask in pairs]

    def _scene(self, image: Path, mask: Path, scene_id: str) -> Scene:
        group = scene_id
        if self.cfg.group_pattern:
            match = re.search(self.cfg.group_pattern, Path(image).relative_to(self.root).as_posix())
            if match is None:
                raise RsSegError(f"data.group_pattern '{self.cfg.group_pattern}' does not match {image}")
            group = match.group(1) if match.groups() else match.group(0)
        return Scene(image, mask, scene_id, group)

    def official_split(self, scene: Scene) -> str | None:
        if self.cfg.images is not None:
            return None
        return scene.id.split("/", 1)[0]


class MultispectralSource(FolderSource):
    """GeoTIFF image/mask pairs with any number of bands (e.g. Sentinel-2 stacks).

    Same layouts as ``folder``; bands can be chosen by name (GeoTIFF band descriptions or
    ``data.band_names``); float masks with integral values are accepted (e.g. 0 = unlabelled
    via ``data.nodata_values: [0]``, or the file's own nodata value).
    """

    name = "multispectral"


class SyntheticSource(FolderSource):
    """The built-in synthetic land-cover scenes, generated on first use into ``root``."""

    name = "synthetic"

    def prepare(self, progress: bool = True) -> None:
        from rsseg.data.synthetic import generate_dataset  # lazy: the generator only for synthetic data

        s = self.cfg.synthetic
        generate_dataset(
            self.root,
            splits={"train": s.train, "val": s.val, "test": s.test},
            size=s.size,
            seed=s.seed,
            progress=progress,
        )
        super().prepare(progress)


def _stem(path: Path) -> str:
    return path.stem


def _key(suffix: str):
    def key(path: Path) -> str:
        return path.stem.removesuffix(suffix) if suffix else path.stem

    return key
