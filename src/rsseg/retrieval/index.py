"""On-disk retrieval index: one folder, written atomically (a crash leaves the old index or none).

Layout (format ``rsseg-retrieval-index``, version 1)::

    INDEX/
      index.json          manifest: format, version, class table, signature_classes (the
                          evaluated classes, class-table order), class_order (EMD ground order),
                          checkpoint, tile, stride, source (prediction|ground-truth), count,
                          cumulative_quantum, rgb_bands, scenes [{id, path, mask, width,
                          height, crs, transform}], embeddings {name: {kind, dim, metric, ...}}
      signatures.npy      float32 (N, C): normalised class histograms, signature_classes order
      cumulative.npy      float32 (N, C): cumulative histograms in class_order, multiples of
                          2**-24, last column 1 (EMD = L1 between rows)
      tiles.jsonl         N lines: {id, scene, x, y, width, height, bounds [left, bottom,
                          right, top] in the scene CRS, mass (share of evaluated pixels)}
      masks/<scene>.tif   uint8 class map of each scene (predicted or ground truth, 255: none)
      embeddings/<name>.npy  float32 (N, D) per embedding (backbone, vit-s16,
                          encoder-geoembed-aerial-resnet18, ...)

Rows are sorted by (scene, y, x), so "ties broken by row" means ties broken by tile id
(``<scene>:<y>:<x>``). While a build runs, finished scenes wait in ``.INDEX.partial/`` beside
the index, so that an interrupted build resumes (``rsseg.retrieval.staging``).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from rsseg.classes import ClassTable
from rsseg.errors import RsSegError
from rsseg.io import sync_tree, write_error
from rsseg.retrieval.signatures import SignatureSpace

FORMAT = "rsseg-retrieval-index"
VERSION = 1


def tile_id(scene: str, y: int, x: int) -> str:
    return f"{scene}:{y}:{x}"


def check_index_dest(path: Path) -> Path:
    """Refuse an output that is a file or a non-empty folder other than an rsseg index."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise RsSegError(f"index output {path} exists and is not a folder")
        if any(path.iterdir()) and not (path / "index.json").is_file():
            raise RsSegError(f"{path} is a non-empty folder that is not an rsseg index; refusing to overwrite it")
    return path


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty folder beside ``path``; on success it replaces ``path`` (an old index
    or an empty folder), otherwise it is removed."""
    path = check_index_dest(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; an index gets the usual permissions
    except OSError as exc:
        raise RsSegError(f"cannot create index folder beside {path}: {exc.strerror or exc}") from None
    old = None
    try:
        yield tmp
        sync_tree(tmp)  # a full disk may show only now: the old index must stay
        if path.exists():
            old = path.parent / f"{tmp.name}.old"
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            if old is not None:
                os.replace(old, path)
                old = None
            raise
    except OSError as exc:
        raise write_error(path, exc) from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_index(
    folder: Path, manifest: dict[str, Any], signatures: np.ndarray, cumulative: np.ndarray,
    tiles: list[dict[str, Any]], embeddings: dict[str, np.ndarray],
) -> None:
    """Write the arrays, tiles and manifest into ``folder`` (an ``atomic_dir``); masks/ is the caller's."""
    folder = Path(folder)
    np.save(folder / "signatures.npy", np.asarray(signatures, dtype=np.float32))
    np.save(folder / "cumulative.npy", np.asarray(cumulative, dtype=np.float32))
    with open(folder / "tiles.jsonl", "w") as f:
        f.writelines(json.dumps(t, separators=(",", ":")) + "\n" for t in tiles)
    if embeddings:
        (folder / "embeddings").mkdir(exist_ok=True)
        for name, arr in embeddings.items():
            np.save(folder / "embeddings" / f"{name}.npy", np.asarray(arr, dtype=np.float32))
    manifest = {"format": FORMAT, "version": VERSION, **manifest, "count": len(tiles)}
    (folder / "index.json").write_text(json.dumps(manifest, indent=2))


def _load_npy(path: Path, rows: int, cols: int | None, mmap: bool = False) -> np.ndarray:
    if not path.is_file():
        raise RsSegError(f"index file missing: {path}")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise RsSegError(f"{path} is not a readable .npy array (corrupt?): {exc}") from None
    if arr.ndim != 2 or arr.shape[0] != rows or (cols is not None and arr.shape[1] != cols):
        want = f"({rows}, {cols if cols is not None else 'D'})"
        raise RsSegError(f"{path} has shape {arr.shape}, the manifest says {want}")
    return arr


class RetrievalIndex:
    """A loaded index: manifest, signatures, cumulative histograms, tiles, masks, embeddings."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        mpath = self.path / "index.json"
        if not self.path.is_dir():
            raise RsSegError(f"index folder not found: {self.path}")
        if not mpath.is_file():
            raise RsSegError(f"{self.path} is not a retrieval index (no index.json)")
        try:
            self.manifest: dict[str, Any] = json.loads(mpath.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RsSegError(f"{mpath} is not readable JSON (corrupt?): {exc}") from None
        m = self.manifest
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise RsSegError(f"{mpath} is not an rsseg retrieval index manifest")
        if m.get("version") != VERSION:
            raise RsSegError(f"{mpath}: index format version {m.get('version')} is not supported (need {VERSION})")
        try:
            self.classes = ClassTable.from_dict(m["classes"])
            self.space = SignatureSpace.of(self.classes, m["class_order"])
            self.count = int(m["count"])
            self.tile, self.scenes = int(m["tile"]), {s["id"]: s for s in m["scenes"]}
        except (KeyError, TypeError, ValueError, RsSegError) as exc:
            raise RsSegError(f"{mpath}: malformed manifest: {exc}") from None
        if m.get("signature_classes") != self.space.names:
            raise RsSegError(f"{mpath}: signature_classes do not match the class table")
        c = self.space.dim
        self.signatures = _load_npy(self.path / "signatures.npy", self.count, c)
        self.cumulative = _load_npy(self.path / "cumulative.npy", self.count, c)

    @cached_property
    def tiles(self) -> list[dict[str, Any]]:
        path = self.path / "tiles.jsonl"
        try:
            tiles = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            raise RsSegError(f"index file missing: {path}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise RsSegError(f"{path} is not readable JSON lines (corrupt?): {exc}") from None
        if len(tiles) != self.count:
            raise RsSegError(f"{path} has {len(tiles)} tiles, the manifest says {self.count}")
        return tiles

    @cached_property
    def rows(self) -> dict[str, int]:
        return {t["id"]: i for i, t in enumerate(self.tiles)}

    def row_of(self, tid: str) -> int:
        """Tile id -> row; unknown ids name the closest known ones."""
        try:
            return self.rows[tid]
        except KeyError:
            close = difflib.get_close_matches(tid, list(self.rows), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise RsSegError(f"tile id '{tid}' is not in index {self.path}{hint}") from None

    @property
    def embedding_names(self) -> list[str]:
        return list(self.manifest.get("embeddings", {}))

    def embedding_info(self, name: str) -> dict[str, Any]:
        info = self.manifest.get("embeddings", {}).get(name)
        if info is None:
            have = ", ".join(self.embedding_names) or "none"
            raise RsSegError(f"index {self.path} has no '{name}' embeddings (it has: {have})")
        return info

    def embeddings(self, name: str) -> np.ndarray:
        info = self.embedding_info(name)
        return _load_npy(self.path / "embeddings" / f"{name}.npy", self.count, int(info["dim"]), mmap=True)

    def scene_mask(self, scene: str) -> np.ndarray:
        # lazy: rasterio, only to read a scene's mask
        from rsseg.infer import read_image

        path = self.path / self.scenes[scene]["mask"]
        if not path.is_file():
            raise RsSegError(f"index file missing: {path}")
        return read_image(path)[0][0]

    def chip_masks(self, rows: list[int] | np.ndarray) -> np.ndarray:
        """(len(rows), t, t) uint8 masks of the given rows, read scene by scene."""
        out = np.empty((len(rows), self.tile, self.tile), dtype=np.uint8)
        by_scene: dict[str, list[int]] = {}
        for j, r in enumerate(rows):
            by_scene.setdefault(self.tiles[int(r)]["scene"], []).append(j)
        for scene, js in by_scene.items():
            mask = self.scene_mask(scene)
            for j in js:
                t = self.tiles[int(rows[j])]
                out[j] = mask[t["y"] : t["y"] + self.tile, t["x"] : t["x"] + self.tile]
        return out

    def chip_image(self, row: int) -> np.ndarray | None:
        """(C, t, t) raw pixels of a row read from its source scene; None if the scene moved."""
        import rasterio
        from rasterio.windows import Window

        t = self.tiles[int(row)]
        path = Path(self.scenes[t["scene"]]["path"])
        if not path.is_file():
            return None
        with rasterio.open(path) as src:
            return src.read(window=Window(t["x"], t["y"], self.tile, self.tile))

    def check_classes(self, classes: ClassTable, source: str) -> None:
        """Refuse a model whose class table differs from the index's."""
        if classes.names != self.classes.names or tuple(classes.evaluated) != tuple(self.classes.evaluated):
            raise RsSegError(
                f"{source} has classes {list(classes.names)} (evaluated {classes.evaluated}) but index "
                f"{self.path} has {list(self.classes.names)} (evaluated {self.classes.evaluated})"
            )
