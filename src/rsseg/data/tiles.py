"""Training chips read lazily through raster windows, so a huge scene is never decoded whole.

Building a ``TileDataset`` scans every scene once (``rsseg.data.index``: files readable, sizes
agree, every mask pixel decodes) and caches the result with the chip grid, keyed on the files'
paths, sizes and mtimes and the tile size. Chips are then read window by window; JPEG/PNG
scenes, which cannot be windowed cheaply, are decoded whole and kept in a small LRU
(``rsseg.data.rasters``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from rasterio.windows import Window
from torch.utils.data import Dataset

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.data.cache import Cache
from rsseg.data.codecs import IndexCodec, MaskCodec, read_mask
from rsseg.data.index import (
    Skipped,
    band_mean_std,
    build_index,
    chip_origins,
    class_counts,
    nonfinite_problem,
)
from rsseg.data.rasters import RasterReader, open_raster
from rsseg.data.scene import Scene
from rsseg.errors import RsSegError

log = logging.getLogger(__name__)

#: ``(image float32 (C, H, W) normalised, mask uint8 (H, W)) -> (image, mask)``
Transform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

#: ImageNet RGB statistics in [0, 1] units (torchvision's), for encoders pretrained on them
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: raw pixel value of 1.0 in ImageNet's [0, 1] units, per image dtype (``data.normalization: imagenet``)
IMAGENET_SCALE = {"uint8": 255.0}


def _dataset_stats(records: Sequence[dict], bands: Sequence[int] | None) -> tuple[list[float], list[float]]:
    return band_mean_std(records, bands)


def _imagenet_stats(records: Sequence[dict], bands: Sequence[int] | None) -> tuple[list[float], list[float]]:
    """ImageNet mean/std in raw pixel units; refused where the bands are not 8-bit RGB."""
    n = len(bands) if bands else (records[0]["count"] if records else 0)
    if n != 3:
        raise RsSegError(f"data.normalization: imagenet needs 3 bands (RGB), the images have {n}; "
                         "use data.normalization: dataset or give data.mean/std")
    dtypes = sorted({str(r.get("dtype")) for r in records})
    if not dtypes or any(d not in IMAGENET_SCALE for d in dtypes):
        raise RsSegError(f"data.normalization: imagenet scales to 8-bit pixels, the images are {', '.join(dtypes)}; "
                         "use data.normalization: dataset or give data.mean/std")
    scale = IMAGENET_SCALE[dtypes[0]]
    return [m * scale for m in IMAGENET_MEAN], [s * scale for s in IMAGENET_STD]


#: ``data.normalization`` -> (scan records, 1-based bands) -> (mean, std) in raw pixel units
NORMALIZATIONS: dict[str, Callable[[Sequence[dict], Sequence[int] | None], tuple[list[float], list[float]]]] = {
    "dataset": _dataset_stats,
    "imagenet": _imagenet_stats,
}


@dataclass(frozen=True)
class Chip:
    scene: int
    row: int
    col: int


class ChipGrid(Sequence[Chip]):
    """The chip origins as one (N, 3) int array (millions of chips stay cheap), read as ``Chip``."""

    def __init__(self, origins: np.ndarray) -> None:
        self.origins = origins

    def __len__(self) -> int:
        return len(self.origins)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return ChipGrid(self.origins[index])
        s, r, c = self.origins[index]
        return Chip(int(s), int(r), int(c))


class TileDataset(Dataset):
    """``tile_size`` chips covering every scene (``grid_positions``), optionally randomly shifted.

    Returns ``(image float32 (C, T, T) normalised, mask int64 (T, T))``; pixels of ignored
    classes become ``IGNORE_INDEX``. Chips past a scene edge are padded (image 0, mask ignore).
    ``codec`` decodes the masks (default: values 0..K-1, 255 = no label); ``transform``
    replaces the default flip/rot90 ``augment``; ``mean``/``std`` default to the statistics of
    these scenes (cached). Bad scenes raise, or with ``on_error='skip'`` are left out and listed
    in ``skipped``. NaN/inf image pixels are bad unless ``image_nodata`` ('nan', 'inf', '-inf')
    covers them: such pixels are then read as 0 (after normalisation) with no label.
    """

    def __init__(
        self,
        scenes: Sequence[Scene],
        classes: ClassTable,
        *,
        tile_size: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        bands: Sequence[int] | None = None,
        random_shift: int = 0,
        crop: Literal["grid", "random"] = "grid",
        normalization: str = "dataset",
        augment: bool = False,
        transform: Transform | None = None,
        codec: MaskCodec | None = None,
        cache_dir: Path | None = None,
        on_error: Literal["raise", "skip"] = "raise",
        decoded_cache: int = 4,
        image_nodata: Sequence[str] = (),
    ) -> None:
        self.tile = tile_size
        self.shift = random_shift
        self.crop = crop
        self.normalization = normalization
        self.augment = augment
        self.transform = transform
        self.bands = list(bands) if bands is not None else None
        self.codec = codec or IndexCodec.identity(classes.num_classes)
        self.num_classes = classes.num_classes
        lut = np.arange(256, dtype=np.uint8)
        lut[list(classes.ignore)] = IGNORE_INDEX
        self.lut = lut
        self.reader = RasterReader(decoded_cache)
        cache = Cache(cache_dir)
        index = build_index(scenes, self.codec, cache, self.reader, on_error)
        self.skipped: list[Skipped] = index.skipped
        self.scanned = index.scanned
        keep = self._check_bands(index, on_error, list(image_nodata))
        self.scenes = [index.scenes[i] for i in keep]
        self.records = [index.records[i] for i in keep]
        self._nodata = [any(r.get("nonfinite", {}).values()) for r in self.records]  # mask those at read
        self.shapes = [(r["height"], r["width"]) for r in self.records]
        chips, self.chips_cached = chip_origins(self.records, [index.keys[i] for i in keep], tile_size, cache)
        self.chips = ChipGrid(chips)
        self._set_normalisation(mean, std)

    def _check_bands(self, index, on_error: str, image_nodata: list[str]) -> list[int]:
        """Scenes whose band count fits ``bands`` (or matches the others when all bands are read)
        and whose NaN/inf pixels, if any, ``image_nodata`` covers."""
        counts = [r["count"] for r in index.records]
        usual = Counter(counts).most_common(1)[0][0] if counts else 0
        keep = []
        for i, (scene, n) in enumerate(zip(index.scenes, counts, strict=True)):
            nonfinite = nonfinite_problem(index.records[i], image_nodata)
            if self.bands and max(self.bands) > n:
                problem = f"{scene.image} has {n} bands; data.bands asks for {self.bands}"
            elif not self.bands and n != usual:
                problem = f"{scene.image} has {n} bands but most scenes have {usual}"
            elif nonfinite:
                problem = nonfinite
            else:
                keep.append(i)
                continue
            if on_error == "raise":
                raise RsSegError(problem)
            log.warning("skipping scene %s: %s", scene.id, problem)
            self.skipped.append(Skipped(scene.id, str(scene.image), problem))
        return keep

    def _set_normalisation(self, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
        if mean is None or std is None:
            mean, std = NORMALIZATIONS[self.normalization](self.records, self.bands)
        n = len(self.bands) if self.bands else (self.records[0]["count"] if self.records else len(mean))
        if len(mean) != n or len(std) != n:
            raise RsSegError(f"data.mean/std have {len(mean)}/{len(std)} values for {n} bands")
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]
        self._mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        self._std = np.asarray(self.std, dtype=np.float32)[:, None, None]

    @property
    def class_counts(self) -> np.ndarray:
        """Exact int64 pixel count per class over these scenes' masks (from the scan)."""
        return class_counts(self.records, self.num_classes)

    def __len__(self) -> int:
        return len(self.chips)

    def window(self, index: int) -> tuple[Scene, Window]:
        """The scene and (randomly shifted, or with ``crop='random'`` anywhere placed) window of chip ``index``."""
        chip = self.chips[index]
        h, w = self.shapes[chip.scene]
        row, col = chip.row, chip.col
        if self.crop == "random":  # the chip only picks the scene: uniform over every in-scene origin
            row = int(torch.randint(0, max(h - self.tile, 0) + 1, ()).item())
            col = int(torch.randint(0, max(w - self.tile, 0) + 1, ()).item())
        elif self.shift:
            dy, dx = torch.randint(-self.shift, self.shift + 1, (2,)).tolist()
            row = min(max(row + dy, 0), max(h - self.tile, 0))
            col = min(max(col + dx, 0), max(w - self.tile, 0))
        return self.scenes[chip.scene], Window(col, row, self.tile, self.tile)

    def read_chip(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(image float32 (C, T, T) normalised, mask uint8 (T, T)) before augmentation."""
        scene, window = self.window(index)
        image = self.reader.read_padded(scene.image, window, self.bands, 0)
        image = (image.astype(np.float32) - self._mean) / self._std
        if scene.mask is None:
            mask = np.full((self.tile, self.tile), IGNORE_INDEX, dtype=np.uint8)
        else:
            mask = self.lut[read_mask(self.reader, scene.mask, self.codec, window)]
        if self._nodata[self.chips[index].scene]:  # NaN/inf that data.nodata_values covers
            bad = ~np.isfinite(image)
            image[bad] = 0.0
            mask[bad.any(axis=0)] = IGNORE_INDEX
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.read_chip(index)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        elif self.augment:
            k = int(torch.randint(0, 4, (1,)))
            image, mask = np.rot90(image, k, axes=(1, 2)), np.rot90(mask, k)
            if torch.rand(1).item() < 0.5:
                image, mask = image[:, :, ::-1], mask[:, ::-1]
        return (
            torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64)),
        )


def band_stats(
    images: Sequence[Path], bands: Sequence[int] | None = None, max_side: int = 512
) -> tuple[list[float], list[float]]:
    """Per-band mean and std over decimated reads of ``images`` (exact enough, and fast).

    Uncached; ``TileDataset`` gets the same numbers from its cached scene index.
    """
    total = total_sq = None
    count = 0
    for path in images:
        with open_raster(path) as src:
            scale = max(1.0, max(src.height, src.width) / max_side)
            shape = (round(src.height / scale), round(src.width / scale))
            data = src.read(list(bands) if bands else None, out_shape=shape).astype(np.float64)
        flat = data.reshape(data.shape[0], -1)
        s, sq = flat.sum(axis=1), (flat**2).sum(axis=1)
        total = s if total is None else total + s
        total_sq = sq if total_sq is None else total_sq + sq
        count += flat.shape[1]
    if total is None or total_sq is None:
        raise RsSegError("no training images to compute band statistics from")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    std = np.where(std < 1e-6, 1.0, std)
    return mean.tolist(), std.tolist()
