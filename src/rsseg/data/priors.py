"""Dataset priors: exact class pixel counts of the training masks (for class-weighted losses)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from rsseg.classes import IGNORE_INDEX
from rsseg.errors import RsSegError


def class_pixel_counts(
    mask_paths: Sequence[Path], num_classes: int, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """Exact int64 pixel count of each class ``0..num_classes-1`` over band 1 of every mask.

    Masks are read block by block (the file's own tiles or strips), so a huge mask is never
    decoded whole. ``ignore_index`` pixels are not counted; any other value outside the
    classes is an error naming the file and the stray values (a wrong class table or mask).
    """
    counts = np.zeros(num_classes, dtype=np.int64)
    for path in map(Path, mask_paths):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            try:
                with rasterio.open(path) as src:
                    stray = _count_mask(src, counts, num_classes, ignore_index, path)
            except RasterioError as exc:
                raise RsSegError(f"cannot read mask {path}: {exc}") from None
        stray.discard(ignore_index)
        if stray:
            shown = sorted(stray)
            more = f" (+{len(shown) - 20} more)" if len(shown) > 20 else ""
            raise RsSegError(
                f"{path}: mask values {shown[:20]}{more} are neither classes "
                f"0..{num_classes - 1} nor the ignore value {ignore_index}"
            )
    return counts


def _count_mask(src, counts: np.ndarray, num_classes: int, ignore_index: int, path: Path) -> set[int]:
    """Add the class counts of ``src`` to ``counts``; return the out-of-range values seen."""
    dtype = np.dtype(src.dtypes[0])
    if not np.issubdtype(dtype, np.integer):
        raise RsSegError(f"{path}: mask data type {dtype} is not an integer type")
    stray: set[int] = set()
    for _, window in src.block_windows(1):
        block = src.read(1, window=window).ravel()
        if dtype == np.uint8 and num_classes <= 256:  # one histogram pass: every value
            hist = np.bincount(block, minlength=256)
            counts += hist[:num_classes]
            stray.update((np.flatnonzero(hist[num_classes:]) + num_classes).tolist())
            continue
        ok = (block >= 0) & (block < num_classes)
        counts += np.bincount(block[ok].astype(np.intp), minlength=num_classes)
        if not ok.all():
            stray.update(np.unique(block[~ok]).tolist())
    return stray


def split_class_counts(source, split: str, num_classes: int) -> np.ndarray:
    """Class pixel counts of a split's masks, decoded the way the dataset's source decodes
    them (RGB colours, palettes, value maps), window by window."""
    counts = np.zeros(num_classes, dtype=np.int64)
    scenes = [s for s in source.scenes(split) if s.mask is not None]
    if not hasattr(source, "read_mask"):
        return class_pixel_counts([s.mask for s in scenes], num_classes)
    for scene in scenes:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(scene.mask) as src:
                height, width = src.height, src.width
        for row in range(0, height, 1024):  # strips bound memory on huge masks
            window = Window(0, row, width, min(1024, height - row))
            mask = source.read_mask(scene, window=window).ravel()
            counts += np.bincount(mask, minlength=256)[:num_classes]
    return counts
