"""The scene index: one pass over every image/mask pair, cached, before any chip is read.

Scanning a scene checks that both files open and decode (a truncated file fails here, not in
the middle of an epoch; ``rsseg.data.integrity`` catches the PNGs GDAL reads as zeros), that
their sizes agree, and that every mask pixel decodes to a class or no label. It also records
what training needs later without touching the pixels again: the exact class pixel counts
(class weights), per-band sums over a decimated read (mean/std) and, for float images only
(one full read), the NaN/inf pixel counts that ``nonfinite_problem`` judges against
``data.nodata_values``.
Records are cached per scene, keyed on both files' paths, sizes and mtimes and on the mask
decoding, so an edited file is re-scanned and nothing else is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from rsseg.data.cache import Cache, digest, file_key
from rsseg.data.codecs import MaskCodec
from rsseg.data.grid import grid_positions
from rsseg.data.integrity import verify_decode
from rsseg.data.rasters import RasterReader, chunk_windows
from rsseg.data.scene import Scene
from rsseg.errors import RsSegError

log = logging.getLogger(__name__)
INDEX_FILE = "scenes.json"
SCAN_VERSION = 2  # records of older scans (no truncation or NaN check) are scanned again
STATS_SIDE = 512  # band statistics read each image decimated to at most this side


@dataclass(frozen=True)
class Skipped:
    """A scene left out under ``data.on_error: skip``: its id, image path and the problem."""

    scene: str
    path: str
    problem: str


@dataclass
class SceneIndex:
    scenes: list[Scene]
    records: list[dict]
    keys: list[str]
    skipped: list[Skipped] = field(default_factory=list)
    scanned: int = 0  # scenes read from disk this time (the rest came from the cache)


def scene_key(scene: Scene, codec: MaskCodec) -> str:
    return digest([file_key(scene.image), file_key(scene.mask), codec.key()])


def build_index(
    scenes: Sequence[Scene],
    codec: MaskCodec,
    cache: Cache,
    reader: RasterReader,
    on_error: Literal["raise", "skip"] = "raise",
) -> SceneIndex:
    """Scan (or recall) every scene; bad scenes raise or are skipped per ``on_error``."""
    stored = (cache.load_json(INDEX_FILE) or {}).get("records", {})
    by_image = {r.get("image"): k for k, r in stored.items()}
    index = SceneIndex([], [], [])
    changed = False
    for scene in scenes:
        try:
            key = scene_key(scene, codec)
        except RsSegError as exc:
            _bad(index, scene, str(exc), on_error)
            continue
        record = stored.get(key)
        if record is None or record.get("v") != SCAN_VERSION:
            record = scan_scene(scene, codec, reader)
            stale = by_image.get(record["image"])
            if stale is not None:  # the file changed: drop its old record, keep the cache small
                stored.pop(stale, None)
            by_image[record["image"]] = key
            stored[key] = record
            index.scanned += 1
            changed = True
        if record.get("error"):
            _bad(index, scene, record["error"], on_error)
            continue
        index.scenes.append(scene)
        index.records.append(record)
        index.keys.append(key)
    if changed:
        cache.save_json(INDEX_FILE, {"records": stored})
    if index.scanned:
        log.info("scanned %d of %d scenes (%d from the cache)", index.scanned, len(scenes), len(scenes) - index.scanned)
    return index


def _bad(index: SceneIndex, scene: Scene, problem: str, on_error: str) -> None:
    if on_error == "raise":
        raise RsSegError(problem)
    log.warning("skipping scene %s: %s", scene.id, problem)
    index.skipped.append(Skipped(scene.id, str(scene.image), problem))


def scan_scene(scene: Scene, codec: MaskCodec, reader: RasterReader) -> dict:
    """A JSON-able record of one scene; ``{"error": ...}`` when a file is bad."""
    record: dict = {"v": SCAN_VERSION, "image": str(Path(scene.image).absolute()), "error": None}
    try:
        record.update(_scan_image(scene.image, reader))
        if scene.mask is not None:
            record["counts"] = _scan_mask(scene, record, codec, reader)
    except RsSegError as exc:
        record["error"] = str(exc)
    return record


def _scan_image(path: Path, reader: RasterReader) -> dict:
    info = reader.info(path)
    verify_decode(path, info)
    scale = max(1.0, max(info.height, info.width) / STATS_SIDE)
    shape = (max(1, round(info.height / scale)), max(1, round(info.width / scale)))
    data = reader.read_decimated(path, shape).astype(np.float64)
    flat = data.reshape(info.count, -1)
    record = {"height": info.height, "width": info.width, "count": info.count, "dtype": info.dtype,
              "n": int(flat.shape[1])}
    if not np.issubdtype(np.dtype(info.dtype), np.floating):  # integer imagery: nothing more to read
        return {**record, "sum": flat.sum(axis=1).tolist(), "sumsq": (flat**2).sum(axis=1).tolist()}
    finite = np.isfinite(flat)
    flat = np.where(finite, flat, 0.0)
    declared = str(info.nodata) if info.nodata is not None and not np.isfinite(info.nodata) else None
    return {**record, "sum": flat.sum(axis=1).tolist(), "sumsq": (flat**2).sum(axis=1).tolist(),
            "valid": finite.sum(axis=1).tolist(), "nonfinite": _count_nonfinite(path, info, reader),
            "nodata": declared}  # the file's own nodata, when NaN/inf: covered like data.nodata_values


def _count_nonfinite(path: Path, info, reader: RasterReader) -> dict[str, int]:
    """NaN, +inf and -inf values over every pixel of a float image (read chunk by chunk)."""
    counts = {"nan": 0, "inf": 0, "-inf": 0}
    for window in [None] if info.whole_file else chunk_windows(info.height, info.width):
        data = reader.read(path, window)
        if np.isfinite(data).all():
            continue
        counts["nan"] += int(np.isnan(data).sum())
        counts["inf"] += int(np.isposinf(data).sum())
        counts["-inf"] += int(np.isneginf(data).sum())
    return counts


def nonfinite_problem(record: dict, covered: Sequence[str]) -> str | None:
    """One line naming the image when it holds NaN/inf values neither ``data.nodata_values`` (``covered``)
    nor the file's declared nodata value covers."""
    found = {k: n for k, n in record.get("nonfinite", {}).items() if n and k not in covered
             and k != record.get("nodata")}
    if not found:
        return None
    counts = ", ".join(f"{n} {k}" for k, n in found.items())
    values = ", ".join(f'"{v}"' for v in [*covered, *found])  # quoted: rich reads [nan] as markup
    return (f"{record['image']}: float image holds non-finite pixel values ({counts}); fix the file or set "
            f"data.nodata_values: [{values}] to read them as no data")


def _scan_mask(scene: Scene, record: dict, codec: MaskCodec, reader: RasterReader) -> dict[str, int]:
    """Exact pixel count per decoded value (class index or 255), chunk by chunk."""
    path = Path(scene.mask)  # type: ignore[arg-type]
    info = reader.info(path)
    verify_decode(path, info)
    if (info.height, info.width) != (record["height"], record["width"]):
        raise RsSegError(
            f"mask {path} is {info.width}x{info.height} but image {scene.image} is "
            f"{record['width']}x{record['height']}"
        )
    hist = np.zeros(256, dtype=np.int64)
    unknown: dict[int, int] = {}
    bands = codec.bands(info)
    windows = [None] if info.whole_file else chunk_windows(info.height, info.width)
    for window in windows:
        decoded, bad = codec.decode(reader.read(path, window, bands), info, path)
        for value, n in bad.items():
            unknown[value] = unknown.get(value, 0) + n
        hist += np.bincount(decoded.ravel(), minlength=256)
    if unknown and codec.unknown == "error":
        raise RsSegError(codec.unknown_message(unknown, path))
    return {str(i): int(n) for i, n in enumerate(hist) if n and i != 254}


def class_counts(records: Sequence[dict], num_classes: int) -> np.ndarray:
    """Exact int64 pixel count per class over the scanned masks (unknown-as-ignore excluded)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for record in records:
        for value, n in record.get("counts", {}).items():
            if int(value) < num_classes:
                counts[int(value)] += n
    return counts


def band_mean_std(records: Sequence[dict], bands: Sequence[int] | None) -> tuple[list[float], list[float]]:
    """Per-band mean and std (raw units) from the cached decimated sums, 1-based ``bands``."""
    if not records:
        raise RsSegError("no training images to compute band statistics from")
    pick = [b - 1 for b in bands] if bands else list(range(records[0]["count"]))
    total = sum(np.asarray(r["sum"])[pick] for r in records)
    total_sq = sum(np.asarray(r["sumsq"])[pick] for r in records)
    count = np.maximum(sum(np.asarray(r.get("valid", [r["n"]] * r["count"]))[pick] for r in records), 1)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    std = np.where(std < 1e-6, 1.0, std)
    return mean.tolist(), std.tolist()


def chip_origins(records: Sequence[dict], keys: Sequence[str], tile: int, cache: Cache) -> tuple[np.ndarray, bool]:
    """(N, 3) int64 ``(scene, row, col)`` of every chip, cached on the scene keys and tile size.

    Returns the chips and whether they came from the cache.
    """
    name = f"chips-{digest([list(keys), tile])[:20]}.npy"
    cached = cache.load_array(name)
    if cached is not None and cached.ndim == 2 and cached.shape[1] == 3:
        return cached, True
    rows = [
        (i, r, c)
        for i, rec in enumerate(records)
        for r in grid_positions(rec["height"], tile)
        for c in grid_positions(rec["width"], tile)
    ]
    chips = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    cache.save_array(name, chips)
    return chips, False
