"""Synthetic scenes on disk: georeferenced GeoTIFFs, the split layout, and a large scene.

Repeated calls with unchanged parameters return at once (a manifest records them), so the demo
and the tests can ask for their data on every run.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from pathlib import Path

import numpy as np

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.data.synthetic.render import SYNTHETIC_CLASSES, generate_scene
from rsseg.errors import RsSegError
from rsseg.io import WriteFailed, atomic_path, atomic_write_text, ensure_writable_dir, raster_writer

DEFAULT_CRS, DEFAULT_ORIGIN = "EPSG:32633", (500000.0, 5600000.0)  # UTM 33N, central Europe
DEFAULT_SPLITS = {"train": 8, "val": 2, "test": 2}
_DATASET_VERSION = 1
_GENERATOR = "rsseg.data.synthetic"


def write_scene(image: np.ndarray, mask: np.ndarray | None, image_path: Path | str,
                mask_path: Path | str | None, *, crs: str = DEFAULT_CRS,
                origin: tuple[float, float] = DEFAULT_ORIGIN, pixel_size: float = 1.0,
                classes: ClassTable = SYNTHETIC_CLASSES) -> None:
    """Write a tiled, deflate-compressed, north-up RGB GeoTIFF and its palette mask, atomically."""
    import rasterio
    from affine import Affine

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] != 3 or image.dtype != np.uint8:
        raise RsSegError(f"image must be (3, H, W) uint8, got {image.shape} {image.dtype}")
    got = None if mask is None else (mask.shape, mask.dtype)
    if mask_path is not None and got != (image.shape[1:], np.uint8):
        raise RsSegError(f"mask must be {image.shape[1:]} uint8, got {got}")
    profile = {"driver": "GTiff", "height": image.shape[1], "width": image.shape[2],
               "dtype": "uint8", "crs": crs, "tiled": True, "blockxsize": 256, "blockysize": 256,
               "transform": Affine(pixel_size, 0.0, origin[0], 0.0, -pixel_size, origin[1]),
               "compress": "deflate"}
    path = Path(image_path)
    try:
        with atomic_path(path) as tmp, raster_writer(tmp, count=3, photometric="RGB",
                                                   predictor=2, **profile) as dst:
            dst.write(image)
        if mask_path is not None:
            path = Path(mask_path)
            with atomic_path(path) as tmp, raster_writer(tmp, count=1, nodata=IGNORE_INDEX,
                                                       **profile) as dst:
                dst.write(mask, 1)
                cmap = {i: (*c, 255) for i, c in enumerate(classes.colors)}
                dst.write_colormap(1, {**cmap, IGNORE_INDEX: (0, 0, 0, 0)})
    except WriteFailed:  # already one line naming the file
        raise
    except (rasterio.errors.RasterioError, OSError) as exc:
        raise RsSegError(f"cannot write GeoTIFF {path}: {exc}") from exc


def _scene_seed(seed: int, split: str, index: int) -> int:
    entropy = [int(seed) % 2**63, zlib.crc32(split.encode()), index]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def generate_dataset(root: Path | str, *, splits: dict[str, int] | None = None,
                     size: int | tuple[int, int] = 512, seed: int = 0,
                     progress: bool = True) -> Path:
    """Write ``root/<split>/{images,masks}/scene_NNN.tif``, classes.json and manifest.json.

    Returns at once when manifest.json records identical parameters and every file exists, so
    the demo and the tests can call it on every run; missing scenes alone are regenerated.
    A non-empty folder without this generator's manifest is refused before anything is written.
    """
    root = ensure_writable_dir(Path(root))
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    for name, n in splits.items():
        plain = re.fullmatch(r"[\w.-]+", str(name)) and name not in (".", "..")
        if not plain or not isinstance(n, int) or n < 0:
            raise RsSegError(f"bad split {name!r}: {n!r} (need a plain name and a count >= 0)")
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    params = {"generator": _GENERATOR, "version": _DATASET_VERSION, "splits": splits,
              "size": [h, w], "seed": int(seed), "crs": DEFAULT_CRS, "pixel_size": 1.0,
              "classes": SYNTHETIC_CLASSES.to_dict()}
    jobs = [(s, f"scene_{i:03d}.tif") for s, n in splits.items() for i in range(n)]
    cols = max(1, math.ceil(math.sqrt(len(jobs))))  # scenes side by side: distinct georeferencing
    scenes = [{"split": s, "file": f, "seed": _scene_seed(seed, s, int(f[6:-4])),
               "origin": [DEFAULT_ORIGIN[0] + (k % cols) * w, DEFAULT_ORIGIN[1] - (k // cols) * h]}
              for k, (s, f) in enumerate(jobs)]
    files = [f"{sc['split']}/{kind}/{sc['file']}" for sc in scenes for kind in ("images", "masks")]
    manifest = root / "manifest.json"
    old = _own_manifest(root, manifest)
    same = old.get("params") == params
    if same and all((root / f).is_file() for f in files):
        return root
    old_files = [f for f in old.get("files", []) if isinstance(f, str)]
    for stale in set(old_files) - set(files):  # only scene files this generator wrote
        if re.fullmatch(r"[\w.-]+/(images|masks)/scene_\d+\.tif", stale):
            (root / stale).unlink(missing_ok=True)
    # an interrupted run must not look complete, yet the folder stays recognisably ours
    atomic_write_text(manifest, json.dumps({"generator": _GENERATOR, "files": files}, indent=2))
    SYNTHETIC_CLASSES.save(root / "classes.json")
    todo = [sc for sc in scenes if not (same and all(
        (root / sc["split"] / kind / sc["file"]).is_file() for kind in ("images", "masks")))]
    from rich import progress as rp

    with rp.Progress(rp.TextColumn("synthetic scenes"), rp.BarColumn(), rp.MofNCompleteColumn(),
                     rp.TimeRemainingColumn(), disable=not progress) as bar:
        task = bar.add_task("scenes", total=len(todo))
        for sc in todo:
            image, mask = generate_scene(h, w, sc["seed"])
            d = root / sc["split"]
            write_scene(image, mask, d / "images" / sc["file"], d / "masks" / sc["file"],
                        origin=tuple(sc["origin"]))
            bar.advance(task)
    record = {"params": params, "scenes": scenes, "files": files}
    atomic_write_text(manifest, json.dumps(record, indent=2))
    return root


def _own_manifest(root: Path, manifest: Path) -> dict:
    """This generator's manifest in ``root`` ({} for a new or empty folder); a non-empty folder
    without one holds someone else's files, which must never be overwritten."""
    try:
        old = json.loads(manifest.read_text())
    except (OSError, ValueError):
        old = None
    if isinstance(old, dict):
        params = old.get("params")
        if _GENERATOR in (old.get("generator"), params.get("generator") if isinstance(params, dict) else None):
            return old
    if any(root.iterdir()):
        raise RsSegError(f"{root} is not empty and was not made by the synthetic generator (no manifest.json "
                         "of its own): it would overwrite files there; choose a new or empty folder as data.root")
    return {}


def generate_large_scene(path: Path | str, size: int = 4096, seed: int = 1234,
                         mask_path: Path | str | None = None) -> Path:
    """One big scene (the demo's full-scene prediction), rendered tile by tile."""
    image, mask = generate_scene(size, size, seed)
    write_scene(image, mask, path, mask_path)
    return Path(path)
