"""Scenes for a retrieval index: names, checks, masks (read or predicted) and chips.

Memory: one scene's image and mask at a time (the caller's), plus a copy of the mask's chips
for their signatures (uint8, about the mask's size) and one batch of image chips per embedder.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.transform import Affine
from rasterio.windows import Window, bounds

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.errors import RsSegError
from rsseg.infer import border_corrected_predict, read_image
from rsseg.io import raster_writer
from rsseg.retrieval.index import tile_id
from rsseg.retrieval.signatures import SignatureSpace


def effective_classes(predictor) -> ClassTable:
    """The checkpoint's class table with the run's ``ignore_classes`` applied (as evaluate)."""
    cfg = getattr(predictor, "config", None)
    table = predictor.classes
    ignore = set(table.ignore)
    for item in list(cfg.data.ignore_classes) if cfg is not None else []:
        if isinstance(item, int) and 0 <= item < table.num_classes:
            ignore.add(item)
        elif item in table.names:
            ignore.add(table.names.index(item))
        else:
            raise RsSegError(f"ignore_classes: unknown class '{item}'; classes: {', '.join(table.names)}")
    return dataclasses.replace(table, ignore=tuple(sorted(ignore)))


def scene_ids(paths: list[Path]) -> list[str]:
    """File stems; stems shared by several scenes get their parent folders, joined by '-'
    (``train/images/a.tif`` -> ``train-images-a``), as few as needed to tell them apart."""
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise RsSegError("a scene is given twice")
    ids = [p.stem for p in resolved]
    depth = [0] * len(ids)
    for _ in range(max(len(p.parts) for p in resolved)):
        clash = [i for i in range(len(ids)) if ids.count(ids[i]) > 1]
        if not clash:
            return ids
        for i in clash:
            depth[i] += 1
            parents = resolved[i].parent.parts[1:]
            ids[i] = "-".join([*parents[max(0, len(parents) - depth[i]) :], resolved[i].stem])
    raise RsSegError(f"cannot give scenes distinct names: {', '.join(map(str, paths))}")


def check_inputs(scenes: list[Path], masks: list[Path] | None) -> list[str]:
    if not scenes:
        raise RsSegError("no scenes given to index")
    for p in scenes:
        if not p.is_file():
            raise RsSegError(f"scene not found: {p}")
    if masks is not None:
        if len(masks) != len(scenes):
            raise RsSegError(f"{len(masks)} masks for {len(scenes)} scenes; give one mask per scene")
        for m in masks:
            if not m.is_file():
                raise RsSegError(f"mask not found: {m}")
    return scene_ids(scenes)


def read_mask(path: Path, shape: tuple[int, int], classes: ClassTable) -> np.ndarray:
    mask = read_image(path)[0][0]
    if mask.shape != shape:
        raise RsSegError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]}, its scene {shape[1]}x{shape[0]}")
    bad = (mask >= classes.num_classes) & (mask != IGNORE_INDEX)
    if bad.any():
        raise RsSegError(f"{path}: mask values {sorted(np.unique(mask[bad]).tolist())[:10]} are not classes")
    return mask.astype(np.uint8)


def write_mask(mask: np.ndarray, profile: dict, path: Path) -> None:
    meta = {
        "driver": "GTiff", "width": mask.shape[1], "height": mask.shape[0], "count": 1,
        "dtype": "uint8", "nodata": IGNORE_INDEX, "compress": "deflate",
        "transform": profile.get("transform") or Affine.identity(),
    }
    if profile.get("crs") is not None:
        meta["crs"] = profile["crs"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with raster_writer(path, **meta) as dst:  # path: a staging temporary (atomic_path)
            dst.write(mask, 1)


def _valid(image: np.ndarray, nodata: float | None) -> np.ndarray:
    """(H, W) bool: False where every band is nodata (those pixels get no class)."""
    if nodata is None:
        return np.ones(image.shape[1:], dtype=bool)
    if isinstance(nodata, float) and np.isnan(nodata):
        return ~np.all(np.isnan(image), axis=0)
    return ~np.all(image == nodata, axis=0)


def _batches(n: int, size: int) -> Iterable[slice]:
    for lo in range(0, n, size):
        yield slice(lo, min(n, lo + size))


def cut_chips(
    sid: str, image: np.ndarray, mask: np.ndarray, transform: Affine, tile: int, stride: int,
    space: SignatureSpace, min_mass: float, embedders: list,
) -> tuple[list[dict], np.ndarray, dict[str, np.ndarray]]:
    """One scene -> tile records, histograms (kept chips) and embeddings per method."""
    h, w = mask.shape
    origins = [(y, x) for y in range(0, h - tile + 1, stride) for x in range(0, w - tile + 1, stride)]
    if not origins:
        return [], np.zeros((0, space.dim)), {}
    hist, mass = space.signatures(np.stack([mask[y : y + tile, x : x + tile] for y, x in origins]))
    keep = [j for j in range(len(origins)) if mass[j] > 0 and mass[j] >= min_mass]
    tiles = []
    for j in keep:
        y, x = origins[j]
        tiles.append({
            "id": tile_id(sid, y, x), "scene": sid, "x": x, "y": y, "width": tile, "height": tile,
            "bounds": [float(v) for v in bounds(Window(x, y, tile, tile), transform)],
            "mass": float(mass[j]),
        })
    vectors: dict[str, np.ndarray] = {}
    kept = [origins[j] for j in keep]
    for name, embed, batch in embedders:
        parts = [
            embed(np.stack([image[:, y : y + tile, x : x + tile] for y, x in kept[sl]]))
            for sl in _batches(len(kept), max(1, batch))
        ]
        if parts:
            vectors[name] = np.concatenate(parts)
    return tiles, hist[keep], vectors


def band_count(path: Path) -> int:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return src.count
    except RasterioIOError as exc:
        raise RsSegError(f"{path} is not a readable image: {exc}") from None


def predict_scene(predictor, image: np.ndarray, nodata: float | None) -> np.ndarray:
    """Raw (C, H, W) image -> (H, W) uint8 classes (Border Correction); nodata pixels 255."""
    mask = border_corrected_predict(predictor, image)
    mask[~_valid(image, nodata)] = IGNORE_INDEX
    return mask
