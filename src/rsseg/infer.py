"""Whole-scene prediction with Border Correction.

Each ``window`` x ``window`` tile is predicted but only its centre ``keep`` x ``keep`` is
kept, so every kept pixel has context on all sides and tile seams vanish (seed paper:
256 px windows, 224 px kept). Outputs: a georeferenced class GeoTIFF plus PNG previews.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine

from rsseg.classes import IGNORE_INDEX
from rsseg.errors import RsSegError
from rsseg.io import atomic_path, ensure_writable_dir
from rsseg.plots import save_rgb_png
from rsseg.predictor import Predictor

try:  # rasterio >= 1.0 exposes GDAL errors from here
    from rasterio._err import CPLE_BaseError
except ImportError:  # pragma: no cover
    CPLE_BaseError = RasterioError  # type: ignore[misc,assignment]

#: Longest side of the PNG previews; larger scenes get a nearest-neighbour overview.
MAX_PREVIEW = 4096


def _margin(window: int, keep: int) -> int:
    if keep <= 0 or window < keep or (window - keep) % 2:
        raise RsSegError(
            f"invalid border correction: window={window}, keep={keep} "
            "(need keep > 0, window >= keep and window - keep even)"
        )
    return (window - keep) // 2


def count_windows(h: int, w: int, keep: int) -> int:
    """Number of windows needed to cover an ``h`` x ``w`` scene with stride ``keep``."""
    return math.ceil(h / keep) * math.ceil(w / keep)


def _check_bands(predictor: Predictor, image: np.ndarray) -> None:
    if image.ndim != 3:
        raise RsSegError(f"expected a (bands, height, width) image, got shape {image.shape}")
    n = image.shape[0]
    if predictor.bands is not None:
        bad = [b for b in predictor.bands if not -n <= b < n]
        if bad:
            raise RsSegError(f"model uses bands {predictor.bands} but the image has {n} band(s)")
    elif n != predictor.in_channels:
        raise RsSegError(
            f"model expects {predictor.in_channels} band(s) but the image has {n}; "
            "set the band selection"
        )


def border_corrected_predict(
    predictor: Predictor,
    image: np.ndarray,
    *,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Raw (C_file, H, W) image -> (H, W) uint8 class indices, tiled with Border Correction."""
    window, keep = predictor.window, predictor.keep
    m = _margin(window, keep)
    _check_bands(predictor, image)
    _, h, w = image.shape
    if h == 0 or w == 0:
        raise RsSegError(f"image is empty: {h}x{w} pixels")
    nh, nw = math.ceil(h / keep), math.ceil(w / keep)
    x = predictor.select_and_normalize(image)
    # reflect-pad to nh*keep x nw*keep plus the margin on every side (numpy reflects
    # repeatedly when the pad is larger than the image)
    x = np.pad(x, ((0, 0), (m, nh * keep - h + m), (m, nw * keep - w + m)), mode="reflect")
    out = np.empty((h, w), dtype=np.uint8)

    def origins() -> Iterator[tuple[int, int]]:
        for i in range(nh):
            for j in range(nw):
                yield i * keep, j * keep

    it = origins()
    done, bs = 0, max(1, int(predictor.batch_size))
    while True:
        batch_pos = list(itertools.islice(it, bs))
        if not batch_pos:
            break
        batch = np.stack([x[:, y : y + window, c : c + window] for y, c in batch_pos])
        logits = predictor.logits(torch.from_numpy(batch))
        if tuple(logits.shape[-2:]) != (window, window):
            raise RsSegError(
                f"model output is {tuple(logits.shape[-2:])} for a {window}x{window} window; "
                "the model must keep the input size"
            )
        pred = logits[:, :, m : m + keep, m : m + keep].argmax(dim=1)
        pred = pred.to(torch.uint8).cpu().numpy()
        for k, (y, c) in enumerate(batch_pos):
            hh, ww = min(keep, h - y), min(keep, w - c)
            out[y : y + hh, c : c + ww] = pred[k, :hh, :ww]
        done += len(batch_pos)
        if progress is not None:
            progress(done)
    return out


def read_image(path: Path) -> tuple[np.ndarray, dict]:
    """Read all bands of a GeoTIFF/JPEG/PNG -> ((C, H, W) array, profile dict)."""
    path = Path(path)
    if not path.exists():
        raise RsSegError(f"input not found: {path}")
    if not path.is_file():
        raise RsSegError(f"input is not a file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                image = src.read()
                profile = {
                    "crs": src.crs,
                    "transform": src.transform,
                    "nodata": src.nodata,
                    "width": src.width,
                    "height": src.height,
                }
    except (RasterioError, CPLE_BaseError, OSError, ValueError) as exc:
        raise RsSegError(f"{path} is not a readable image: {exc}") from exc
    return image, profile


def _valid_mask(image: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """(H, W) bool, False where every band equals nodata; None when there is no nodata."""
    if nodata is None:
        return None
    if isinstance(nodata, float) and math.isnan(nodata):
        return ~np.all(np.isnan(image), axis=0)
    return ~np.all(image == nodata, axis=0)


def _overview_step(h: int, w: int) -> int:
    return max(1, math.ceil(max(h, w) / MAX_PREVIEW))


def _to_rgb8(image: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """(C, H, W) raw -> (H, W, 3) uint8: first 3 bands (or band 1 repeated), stretched."""
    bands = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    if bands.dtype == np.uint8:
        return np.ascontiguousarray(bands.transpose(1, 2, 0))
    rgb = np.zeros(bands.shape[1:] + (3,), dtype=np.uint8)
    for b in range(3):
        band = bands[b].astype(np.float64)
        sample = band[valid] if valid is not None else band
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            continue
        lo, hi = np.percentile(sample, [2, 98])
        scaled = (band - lo) / (hi - lo) if hi > lo else np.zeros_like(band)
        rgb[..., b] = np.nan_to_num(np.clip(scaled, 0, 1) * 255, nan=0).astype(np.uint8)
    return rgb


def _write_classes_tif(
    classes_map: np.ndarray, profile: dict, predictor: Predictor, path: Path
) -> None:
    h, w = classes_map.shape
    meta = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": 1,
        "dtype": "uint8",
        "nodata": IGNORE_INDEX,
        "compress": "deflate",
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "transform": profile.get("transform") or Affine.identity(),
    }
    if profile.get("crs") is not None:
        meta["crs"] = profile["crs"]
    cmap = {i: (*map(int, c), 255) for i, c in enumerate(predictor.classes.colors)}
    cmap[IGNORE_INDEX] = (0, 0, 0, 0)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with rasterio.open(tmp, "w", **meta) as dst:
                dst.write(classes_map, 1)
                dst.write_colormap(1, cmap)
        except (RasterioError, CPLE_BaseError) as exc:
            raise RsSegError(f"cannot write {path}: {exc}") from exc


def _predict_loaded(
    predictor: Predictor,
    image: np.ndarray,
    profile: dict,
    stem: str,
    out_dir: Path,
    progress: Callable[[int], None] | None,
) -> dict[str, Path]:
    classes_map = border_corrected_predict(predictor, image, progress=progress)
    valid = _valid_mask(image, profile.get("nodata"))
    if valid is not None:
        classes_map[~valid] = IGNORE_INDEX
    paths = {
        "classes": out_dir / f"{stem}_classes.tif",
        "color": out_dir / f"{stem}_color.png",
        "blend": out_dir / f"{stem}_blend.png",
    }
    _write_classes_tif(classes_map, profile, predictor, paths["classes"])

    s = _overview_step(*classes_map.shape)
    small_map = classes_map[::s, ::s]
    small_valid = valid[::s, ::s] if valid is not None else None
    color = predictor.classes.colorize(small_map)
    save_rgb_png(color, paths["color"])
    rgb = _to_rgb8(image[:, ::s, ::s], small_valid)
    blend = (0.5 * rgb.astype(np.float32) + 0.5 * color.astype(np.float32)).round().astype(np.uint8)
    if small_valid is not None:
        blend[~small_valid] = rgb[~small_valid]
    save_rgb_png(blend, paths["blend"])
    return paths


def predict_file(
    predictor: Predictor,
    input_path: Path,
    out_dir: Path,
    *,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Path]:
    """Predict one scene; write ``<stem>_classes.tif``, ``_color.png``, ``_blend.png``."""
    input_path = Path(input_path)
    out_dir = ensure_writable_dir(Path(out_dir))
    image, profile = read_image(input_path)
    return _predict_loaded(predictor, image, profile, input_path.stem, out_dir, progress)


def predict_files(
    predictor: Predictor,
    inputs: list[Path],
    out_dir: Path,
    *,
    show_progress: bool = True,
) -> list[dict[str, Path]]:
    """Predict several scenes (checked up front) with one progress bar per scene."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    inputs = [Path(p) for p in inputs]
    _margin(predictor.window, predictor.keep)
    for p in inputs:
        if not p.exists():
            raise RsSegError(f"input not found: {p}")
        if not p.is_file():
            raise RsSegError(f"input is not a file: {p}")
    seen: dict[str, Path] = {}
    for p in inputs:
        if p.stem in seen:
            raise RsSegError(
                f"inputs {seen[p.stem]} and {p} share the name '{p.stem}'; "
                "their outputs would overwrite each other"
            )
        seen[p.stem] = p
    out_dir = ensure_writable_dir(Path(out_dir))

    results: list[dict[str, Path]] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("windows"),
        TimeRemainingColumn(),
        disable=not show_progress,
    ) as bar:
        for p in inputs:
            image, profile = read_image(p)
            total = count_windows(image.shape[1], image.shape[2], predictor.keep)
            task = bar.add_task(p.name, total=total)

            def advance(done: int, task=task) -> None:
                bar.update(task, completed=done)

            results.append(_predict_loaded(predictor, image, profile, p.stem, out_dir, advance))
    return results
