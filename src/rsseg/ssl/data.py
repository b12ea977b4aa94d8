"""Unlabelled tiles for self-supervised pretraining: two views per tile, read lazily.

Every image (a dataset's scenes, masks unused, and any GeoTIFF/JPEG/PNG files) is covered by
a grid of ``tile_size`` regions (``rsseg.data.grid.grid_positions``), each randomly shifted
per draw and read through a raster window (JPEG/PNG are decoded whole into a per-process LRU).
Both views of a sample are random resized crops of the region (``crop_scale``, resized to
``view_size``) followed by the photometric and D4 augmentation of ``pretrain.augment``.

Positives from the same place: rasters covering the same ground (``footprint_partners``:
same CRS, transform and size, or same CRS and overlapping bounds) are other dates or
sensors of one footprint. With probability ``other_date_p`` the second view's region is the
same ground read from a partner raster, located through the rasters' transforms, so the pair
teaches invariance to season and acquisition rather than only to augmentation (seed 002).
"""

from __future__ import annotations

import glob
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from affine import Affine
from rasterio.windows import Window, from_bounds
from rasterio.windows import bounds as window_bounds
from torch.utils.data import Dataset

from rsseg.config.augment import AugmentConfig
from rsseg.data.augment import build_augment
from rsseg.data.rasters import RasterReader, open_raster
from rsseg.data.grid import grid_positions
from rsseg.errors import RsSegError

IMAGE_SUFFIXES = (".tif", ".tiff", ".jpg", ".jpeg", ".png")


def expand_images(entries: Sequence[str]) -> list[Path]:
    """Files, folders (searched recursively for ``IMAGE_SUFFIXES``) and globs -> sorted files."""
    out: list[Path] = []
    for entry in entries:
        path = Path(entry)
        if any(ch in entry for ch in "*?["):
            found = [Path(p) for p in glob.glob(entry, recursive=True) if Path(p).is_file()]
        elif path.is_dir():
            found = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        elif path.is_file():
            found = [path]
        else:
            raise RsSegError(f"pretrain.images: no such file or folder: {entry}")
        if not found:
            raise RsSegError(f"pretrain.images: {entry} matches no images ({', '.join(IMAGE_SUFFIXES)})")
        out.extend(sorted(found))
    return list(dict.fromkeys(out))  # de-duplicated, order kept


@dataclass(frozen=True)
class Raster:
    """What sampling needs to know about one image; ``crs`` None = not georeferenced."""

    path: Path
    height: int
    width: int
    count: int
    crs: str | None
    transform: tuple[float, ...]
    bands: tuple[int, ...] | None = None  # 1-based bands read; None = all
    dtype: str = "uint8"  # pixel type: rasters of another type get their own normalisation

    @property
    def num_bands(self) -> int:
        return len(self.bands) if self.bands else self.count

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform[:6])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        left, bottom, right, top = window_bounds(Window(0, 0, self.width, self.height), self.affine)
        return min(left, right), min(bottom, top), max(left, right), max(bottom, top)


def scan_rasters(paths: Sequence[Path], bands: Sequence[int] | None = None) -> list[Raster]:
    """Open every image once (an unreadable one is an error naming the file)."""
    rasters: list[Raster] = []
    for path in paths:
        with open_raster(Path(path)) as src:
            georef = src.crs is not None and not src.transform.is_identity
            crs = src.crs.to_string() if georef else None
            raster = Raster(Path(path), src.height, src.width, src.count, crs, tuple(src.transform)[:6],
                            tuple(bands) if bands else None, str(src.dtypes[0]))
        if bands and max(bands) > raster.count:
            raise RsSegError(f"{path} has {raster.count} bands; the pretraining bands are {list(bands)}")
        rasters.append(raster)
    return rasters


def check_band_counts(rasters: Sequence[Raster]) -> int:
    """The common number of bands read from every raster; a mismatch names the file."""
    if not rasters:
        raise RsSegError("no images to pretrain on")
    first = rasters[0]
    for r in rasters:
        if r.num_bands != first.num_bands:
            raise RsSegError(
                f"{r.path} gives {r.num_bands} bands but {first.path} gives {first.num_bands}: pretraining "
                "images must share their bands (select them with pretrain.bands / data.bands)"
            )
    return first.num_bands


def footprint_partners(rasters: Sequence[Raster], mode: str = "exact") -> list[list[int]]:
    """For each raster, the others covering the same ground (other dates or sensors).

    ``exact``: same CRS, geotransform and size. ``overlap``: same CRS and bounds that overlap
    (windows are then mapped between the rasters' grids). Non-georeferenced images have none.
    """
    partners: list[list[int]] = [[] for _ in rasters]
    if mode == "exact":
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(rasters):
            if r.crs is not None:
                key = (r.crs, tuple(round(v, 9) for v in r.transform), r.height, r.width)
                groups.setdefault(key, []).append(i)
        for members in groups.values():
            for i in members:
                partners[i] = [j for j in members if j != i]
        return partners
    if mode != "overlap":
        raise RsSegError(f"unknown footprint mode '{mode}' (exact or overlap)")
    for i, a in enumerate(rasters):
        for j, b in enumerate(rasters):
            if i == j or a.crs is None or a.crs != b.crs:
                continue
            (l1, b1, r1, t1), (l2, b2, r2, t2) = a.bounds, b.bounds
            if min(r1, r2) > max(l1, l2) and min(t1, t2) > max(b1, b2):
                partners[i].append(j)
    return partners


@dataclass(frozen=True)
class Pair:
    """Where a sample's two regions come from: raster index and pixel window of each."""

    first: int
    window1: Window
    second: int
    window2: Window


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))


def _randint(lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi] (torch's RNG, seeded per DataLoader worker)."""
    return lo if hi <= lo else int(torch.randint(lo, hi + 1, ()))


class UnlabelledTiles(Dataset):
    """``(view1, view2)`` float32 tensors (C, V, V) per grid region of the given rasters."""

    def __init__(
        self,
        rasters: Sequence[Raster],
        *,
        tile_size: int,
        view_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        crop_scale: tuple[float, float] = (0.3, 1.0),
        augment: AugmentConfig | None = None,
        partners: Sequence[Sequence[int]] | None = None,
        other_date_p: float = 0.5,
        decoded_cache: int = 64,
        own_stats: dict[int, tuple[Sequence[float], Sequence[float]]] | None = None,
    ) -> None:
        self.rasters = list(rasters)
        self.tile, self.view = tile_size, view_size
        n = check_band_counts(self.rasters)
        if len(mean) != n or len(std) != n:
            raise RsSegError(f"mean/std have {len(mean)}/{len(std)} values for {n} pretraining bands")
        self.num_bands = n
        self._mean = np.asarray(mean, dtype=np.float32)[:, None, None]
        self._std = np.asarray(std, dtype=np.float32)[:, None, None]
        # raster index -> its own (mean, std): imagery on another radiometric scale (uint16
        # Landsat beside uint8 aerial JPEGs) is standardised by its own band statistics
        self._own = {
            i: (np.asarray(m, dtype=np.float32)[:, None, None], np.asarray(s, dtype=np.float32)[:, None, None])
            for i, (m, s) in (own_stats or {}).items()
        }
        self.crop_scale = crop_scale
        self.partners = [list(p) for p in partners] if partners is not None else [[] for _ in self.rasters]
        self.other_date_p = other_date_p
        self.reader = RasterReader(decoded_cache)
        if augment is not None and n != 3:  # saturation/hue are RGB notions: off, without a warning
            jitter = augment.color_jitter.model_copy(update={"saturation": 0.0, "hue": 0.0})
            augment = augment.model_copy(update={"color_jitter": jitter})
        self.augment = build_augment(augment, n) if augment is not None else None
        self.chips = [
            (i, row, col)
            for i, r in enumerate(self.rasters)
            for row in grid_positions(r.height, tile_size)
            for col in grid_positions(r.width, tile_size)
        ]

    def __len__(self) -> int:
        return len(self.chips)

    @property
    def with_partners(self) -> int:
        """Number of rasters that have at least one same-ground partner."""
        return sum(bool(p) for p in self.partners)

    # ------------------------------------------------------------------ sampling
    def draw(self, index: int) -> Pair:
        """The (randomly shifted) region of chip ``index`` and where its positive comes from."""
        i, row, col = self.chips[index]
        r, t = self.rasters[i], self.tile
        half = t // 2
        row = min(max(row + _randint(-half, half), 0), max(r.height - t, 0))
        col = min(max(col + _randint(-half, half), 0), max(r.width - t, 0))
        window = Window(col, row, t, t)
        partners = self.partners[i]
        if partners and float(torch.rand(())) < self.other_date_p:
            for k in torch.randperm(len(partners)).tolist():
                other = self._same_ground(window, r, self.rasters[partners[k]])
                if other is not None:
                    return Pair(i, window, partners[k], other)
        return Pair(i, window, i, window)

    @staticmethod
    def _same_ground(window: Window, a: Raster, b: Raster) -> Window | None:
        """The window of ``b`` covering the ground of ``window`` in ``a`` (None if outside b)."""
        if a.transform == b.transform:
            w = window
        else:
            try:
                w = from_bounds(*window_bounds(window, a.affine), transform=b.affine)
            except Exception:  # noqa: BLE001 (rotated grids etc.: no partner rather than a crash)
                return None
        col, row = round(w.col_off), round(w.row_off)
        width, height = max(1, round(w.width)), max(1, round(w.height))
        if col < 0 or row < 0 or col + width > b.width or row + height > b.height:
            return None
        return Window(col, row, width, height)

    # ------------------------------------------------------------------ reading
    def region(self, raster: int, window: Window) -> np.ndarray:
        """Normalised float32 (C, T, T) pixels of a window (resampled if another pixel size)."""
        r = self.rasters[raster]
        bands = list(r.bands) if r.bands else None
        data = self.reader.read_padded(r.path, window, bands, 0).astype(np.float32)
        mean, std = self._own.get(raster, (self._mean, self._std))
        data = (data - mean) / std
        if data.shape[1:] != (self.tile, self.tile):
            data = F.interpolate(torch.from_numpy(data)[None], size=(self.tile, self.tile), mode="bilinear",
                                 antialias=True, align_corners=False)[0].numpy()
        return data

    def make_view(self, region: np.ndarray) -> torch.Tensor:
        """Random resized crop of ``region`` to ``view_size``, then the augmentation."""
        _, h, w = region.shape
        area = h * w * _uniform(*self.crop_scale)
        ratio = math.exp(_uniform(math.log(3 / 4), math.log(4 / 3)))
        cw = min(w, max(1, round(math.sqrt(area * ratio))))
        ch = min(h, max(1, round(math.sqrt(area / ratio))))
        top, left = _randint(0, h - ch), _randint(0, w - cw)
        crop = torch.from_numpy(np.ascontiguousarray(region[:, top : top + ch, left : left + cw]))
        view = F.interpolate(crop[None], size=(self.view, self.view), mode="bilinear",
                             antialias=ch > self.view or cw > self.view, align_corners=False)[0].numpy()
        if self.augment is not None:
            view, _ = self.augment(view, np.zeros(view.shape[1:], dtype=np.uint8))
        return torch.from_numpy(np.ascontiguousarray(view, dtype=np.float32))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self.draw(index)
        first = self.region(pair.first, pair.window1)
        second = first if pair.second == pair.first and pair.window2 == pair.window1 else self.region(
            pair.second, pair.window2
        )
        return self.make_view(first), self.make_view(second)
