"""Training chips read lazily through raster windows, so a huge scene is never decoded whole."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window
from torch.utils.data import Dataset

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.data.sources import Scene
from rsseg.errors import RsSegError


@dataclass(frozen=True)
class Chip:
    scene: int
    row: int
    col: int


def _open(path: Path) -> rasterio.DatasetReader:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise RsSegError(f"{path} is not a readable image: {exc}") from None


def grid_positions(length: int, tile: int) -> list[int]:
    """Chip origins covering ``[0, length)`` with ``ceil(length / tile)`` evenly spread chips.

    Unlike a plain non-overlapping grid this never drops the remainder of a scene whose side
    is not a multiple of the chip size; chips overlap by less than one chip in total.
    """
    if length <= tile:
        return [0]
    n = -(-length // tile)
    return [round(k * (length - tile) / (n - 1)) for k in range(n)]


class TileDataset(Dataset):
    """``tile_size`` chips covering every scene (``grid_positions``), optionally randomly shifted.

    Returns ``(image float32 (C, T, T) normalised, mask int64 (T, T))``; pixels of ignored
    classes become ``IGNORE_INDEX``. Chips past a scene edge are padded (image 0, mask ignore).
    """

    def __init__(
        self,
        scenes: Sequence[Scene],
        classes: ClassTable,
        *,
        tile_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        bands: Sequence[int] | None = None,
        random_shift: int = 0,
        augment: bool = False,
    ) -> None:
        self.scenes = list(scenes)
        self.tile = tile_size
        self.shift = random_shift
        self.augment = augment
        self.bands = list(bands) if bands is not None else None
        self.mean = np.asarray(mean, dtype=np.float32)[:, None, None]
        self.std = np.asarray(std, dtype=np.float32)[:, None, None]
        lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        lut[: classes.num_classes] = np.arange(classes.num_classes)
        lut[list(classes.ignore)] = IGNORE_INDEX
        self.lut = lut
        self.num_classes = classes.num_classes
        self.shapes: list[tuple[int, int]] = []
        self.chips: list[Chip] = []
        for i, scene in enumerate(self.scenes):
            with _open(scene.image) as src:
                h, w = src.height, src.width
                n_bands = src.count
            if scene.mask is not None:
                with _open(scene.mask) as msk:
                    if (msk.height, msk.width) != (h, w):
                        raise RsSegError(
                            f"mask {scene.mask} is {msk.width}x{msk.height} but image "
                            f"{scene.image} is {w}x{h}"
                        )
            if self.bands and max(self.bands) > n_bands:
                raise RsSegError(f"{scene.image} has {n_bands} bands; data.bands asks for {self.bands}")
            self.shapes.append((h, w))
            for r in grid_positions(h, self.tile):
                for c in grid_positions(w, self.tile):
                    self.chips.append(Chip(i, r, c))
        self._handles: dict[Path, rasterio.DatasetReader] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.chips)

    def _reader(self, path: Path) -> rasterio.DatasetReader:
        if self._pid != os.getpid():  # forked into a DataLoader worker: reopen files
            self._handles, self._pid = {}, os.getpid()
        if path not in self._handles:
            self._handles[path] = _open(path)
        return self._handles[path]

    def _read(self, path: Path, window: Window, fill: int, bands: list[int] | None) -> np.ndarray:
        try:
            return self._reader(path).read(bands, window=window, boundless=True, fill_value=fill)
        except RasterioIOError as exc:
            raise RsSegError(f"cannot read {path} at {window}: {exc}") from None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        chip = self.chips[index]
        scene = self.scenes[chip.scene]
        h, w = self.shapes[chip.scene]
        row, col = chip.row, chip.col
        if self.shift:
            dy, dx = torch.randint(-self.shift, self.shift + 1, (2,)).tolist()
            row = min(max(row + dy, 0), max(h - self.tile, 0))
            col = min(max(col + dx, 0), max(w - self.tile, 0))
        window = Window(col, row, self.tile, self.tile)
        image = self._read(scene.image, window, 0, self.bands)
        image = (image.astype(np.float32) - self.mean) / self.std
        if scene.mask is not None:
            mask = self._read(scene.mask, window, IGNORE_INDEX, [1])[0]
            bad = (mask >= self.num_classes) & (mask != IGNORE_INDEX)
            if bad.any():
                values = sorted(set(np.unique(mask[bad]).tolist()))
                raise RsSegError(
                    f"{scene.mask}: mask values {values} are not classes 0..{self.num_classes - 1}"
                )
            mask = self.lut[mask]
        else:
            mask = np.full((self.tile, self.tile), IGNORE_INDEX, dtype=np.uint8)
        if self.augment:
            k = int(torch.randint(0, 4, (1,)))
            image, mask = np.rot90(image, k, axes=(1, 2)), np.rot90(mask, k)
            if torch.rand(1).item() < 0.5:
                image, mask = image[:, :, ::-1], mask[:, ::-1]
        return (
            torch.from_numpy(np.ascontiguousarray(image)),
            torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64)),
        )


def band_stats(
    images: Sequence[Path], bands: Sequence[int] | None = None, max_side: int = 512
) -> tuple[list[float], list[float]]:
    """Per-band mean and std over decimated reads of ``images`` (exact enough, and fast)."""
    total = total_sq = None
    count = 0
    for path in images:
        with _open(path) as src:
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
