"""What every dataset source shares: scenes, splits, exclusions, bands, masks and the cache.

A source knows one dataset's on-disk layout (``list_scenes``), its class table and how its
masks are written (``make_codec``), and its official split if it has one. Everything else
(splitting, exclusion lists, band names, decoding, caching, tiling) is done here the same way
for every dataset.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from rsseg.classes import ClassTable
from rsseg.config import DataConfig
from rsseg.data.augment import build_augment
from rsseg.data.cache import default_cache_root, digest
from rsseg.data.codecs import MaskCodec, read_mask
from rsseg.data.datasets.tables import with_ignored
from rsseg.data.index import Skipped
from rsseg.data.rasters import RasterReader
from rsseg.data.scene import Scene
from rsseg.data.splits import SPLITS, split_scenes
from rsseg.data.tiles import TileDataset
from rsseg.errors import RsSegError


class Source:
    """Base of every dataset source (see the module docstring)."""

    #: registry name, also the cache folder prefix
    name = "source"
    #: class table fixed by the dataset (``data.classes`` is then refused)
    fixed_classes = True

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg
        self.root = Path(cfg.root)
        #: scenes left out by ``data.on_error: skip`` while listing (the tile datasets keep theirs)
        self.skipped: list[Skipped] = []
        self._all: list[Scene] | None = None
        self._splits: dict[str, list[Scene]] | None = None
        self._reader = RasterReader(decoded_cache=0)

    # ------------------------------------------------------------------ per dataset
    def class_table(self) -> ClassTable:
        raise NotImplementedError

    def make_codec(self) -> MaskCodec:
        raise NotImplementedError

    def list_scenes(self) -> list[Scene]:
        """Every labelled scene of the dataset, in any order."""
        raise NotImplementedError

    def official_split(self, scene: Scene) -> str | None:
        """'train', 'val', 'test', 'trainval' (val carved from it) or None (not in the split)."""
        return None

    def default_band_names(self) -> list[str] | None:
        return None

    # ------------------------------------------------------------------ shared
    def prepare(self, progress: bool = True) -> None:
        """Make the data available (nothing to do for a dataset already on disk)."""
        if not self.root.is_dir():
            raise RsSegError(f"data.root does not exist or is not a folder: {self.root}")
        if self.fixed_classes and self.cfg.classes is not None:
            raise RsSegError(f"data.classes is for folder/multispectral datasets; {self.name} has a fixed class table")

    def classes(self) -> ClassTable:
        return with_ignored(self.class_table(), self.cfg.ignore_classes, self.cfg.learn_classes)

    @cached_property
    def codec(self) -> MaskCodec:
        """Decodes this dataset's masks into class indices (also for data check/stats/evaluate)."""
        return self.make_codec()

    def bad(self, path: Path, problem: str, scene: str = "") -> None:
        """A bad input met while listing: raise, or record and go on (``data.on_error: skip``)."""
        message = f"{path}: {problem}"
        if self.cfg.on_error == "raise":
            raise RsSegError(message)
        self.skipped.append(Skipped(scene or Path(path).stem, str(path), message))

    def all_scenes(self) -> list[Scene]:
        """Every labelled scene, minus ``data.exclude``, sorted by id (ids checked unique)."""
        if self._all is None:
            scenes = sorted(self.list_scenes(), key=lambda s: s.id)
            seen: dict[str, Scene] = {}
            for scene in scenes:
                if scene.id in seen:
                    raise RsSegError(f"two scenes share the id '{scene.id}': {seen[scene.id].image} and {scene.image}")
                seen[scene.id] = scene
            excluded = self.excluded()
            self._all = [s for s in scenes if not self._is_excluded(s, excluded)]
        return self._all

    def excluded(self) -> set[str]:
        path = self.cfg.exclude
        if path is None:
            return set()
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise RsSegError(f"data.exclude: file not found: {path}") from None
        except (OSError, ValueError) as exc:
            raise RsSegError(f"data.exclude: cannot read {path}: {exc}") from None
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise RsSegError(f"data.exclude: {path} must hold a JSON list of scene ids or image paths")
        return set(data)

    def _is_excluded(self, scene: Scene, excluded: set[str]) -> bool:
        if not excluded:
            return False
        image = Path(scene.image)
        names = {scene.id, str(image), str(image.absolute())}
        if image.is_relative_to(self.root):
            names.add(image.relative_to(self.root).as_posix())
        return bool(names & excluded)

    def splits(self) -> dict[str, list[Scene]]:
        if self._splits is None:
            scenes = self.all_scenes()
            official: Callable[[Scene], str | None] | None = self.official_split
            if not any(self.official_split(s) is not None for s in scenes):
                official = None
            self._splits = split_scenes(scenes, self.cfg.split, official)
        return self._splits

    def scenes(self, split: str) -> list[Scene]:
        if split not in SPLITS:
            raise RsSegError(f"unknown split '{split}'; choose one of {', '.join(SPLITS)}")
        scenes = self.splits()[split]
        if not scenes:
            raise RsSegError(
                f"split '{split}' of dataset '{self.name}' in {self.root} has no scenes "
                f"({len(self.all_scenes())} labelled scenes in all); set data.split"
            )
        return scenes

    def read_mask(self, scene: Scene, window: Window | None = None) -> np.ndarray:
        """(H, W) uint8 class indices of a scene's mask (a window of it), 255 = no label."""
        if scene.mask is None:
            raise RsSegError(f"scene {scene.id} ({scene.image}) has no mask")
        return read_mask(self._reader, scene.mask, self.codec, window)

    # ------------------------------------------------------------------ bands
    def band_names(self) -> list[str] | None:
        """Names of the image bands: ``data.band_names``, the dataset's, or the GeoTIFF's."""
        if self.cfg.band_names:
            return list(self.cfg.band_names)
        names = self.default_band_names()
        if names:
            return names
        scenes = self.all_scenes()
        if not scenes:
            return None
        descriptions = self._reader.info(scenes[0].image).descriptions
        return list(descriptions) if descriptions and all(descriptions) else None  # type: ignore[arg-type]

    def band_indices(self) -> list[int] | None:
        """``data.bands`` as 1-based band numbers (names looked up in ``band_names``)."""
        if self.cfg.bands is None:
            return None
        if all(isinstance(b, int) for b in self.cfg.bands):
            return list(self.cfg.bands)  # type: ignore[arg-type]
        names = self.band_names()
        if not names:
            raise RsSegError("data.bands names bands, but the images have no band names: set data.band_names")
        lower = [n.lower() for n in names]
        out = []
        for band in self.cfg.bands:
            if isinstance(band, int):
                out.append(band)
            elif band in names:
                out.append(names.index(band) + 1)
            elif band.lower() in lower:
                out.append(lower.index(band.lower()) + 1)
            else:
                raise RsSegError(f"data.bands: no band named '{band}'; bands: {', '.join(names)}")
        return out

    # ------------------------------------------------------------------ cache and tiling
    def cache_dir(self) -> Path:
        """``<data.cache_dir or ~/.cache/rsseg>/<dataset>-<hash of root>``."""
        base = Path(self.cfg.cache_dir) if self.cfg.cache_dir else default_cache_root()
        return base / f"{self.name}-{digest(str(self.root.absolute()))[:12]}"

    def tile_dataset(
        self,
        scenes: Sequence[Scene],
        *,
        train: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        transform: Callable | None = None,
    ):
        """A ``TileDataset`` of ``scenes`` with this source's codec, bands, cache and policies."""
        cfg = self.cfg
        dataset = TileDataset(
            scenes, self.classes(), tile_size=cfg.tile_size, mean=mean, std=std,
            bands=self.band_indices(), random_shift=cfg.random_shift if train else 0,
            crop=cfg.crop if train else "grid", normalization=cfg.normalization,
            augment=False, transform=transform if train else None,
            codec=self.codec, cache_dir=self.cache_dir(), on_error=cfg.on_error,
            decoded_cache=cfg.decoded_cache,
            image_nodata=[v for v in cfg.nodata_values if isinstance(v, str)],  # nan/inf of float images
        )
        if train and transform is None:  # the YAML pipeline (data.augment); None when all off
            dataset.transform = build_augment(cfg.augment, len(dataset.mean))
        return dataset


def pair_files(
    source: Source, images: Sequence[Path], masks: Sequence[Path], image_key: Callable[[Path], str],
    mask_key: Callable[[Path], str],
) -> list[tuple[Path, Path]]:
    """Pair images with masks by key; an image without a mask is a bad input."""
    by_key: dict[str, Path] = {}
    for mask in masks:
        key = mask_key(mask)
        if key in by_key:
            raise RsSegError(f"two masks for '{key}': {by_key[key]} and {mask}")
        by_key[key] = mask
    pairs = []
    for image in images:
        mask = by_key.get(image_key(image))
        if mask is None:
            source.bad(image, f"no mask found for this image (key '{image_key(image)}')")
            continue
        pairs.append((image, mask))
    return pairs


def relative_id(path: Path, root: Path) -> str:
    """Path under ``root`` without its suffix, with '/' separators: a stable scene id."""
    path = Path(path)
    rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
    return rel.with_suffix("").as_posix()


def locate(root: Path, *names: str, depth: int = 2) -> Path | None:
    """The first folder called one of ``names`` at ``root`` or up to ``depth`` levels below.

    Official archives unpack with or without a top folder; this finds the layout either way.
    """
    for level in range(depth + 1):
        pattern = "/".join(["*"] * level)
        for name in names:
            hits = sorted(p for p in root.glob(f"{pattern}/{name}" if level else name) if p.is_dir())
            if hits:
                return hits[0]
    return None
