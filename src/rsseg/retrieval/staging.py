"""Resumable index builds: every finished scene is kept in a staging folder beside the index.

``build_index(out=INDEX)`` writes each scene's result to ``.INDEX.partial/`` (beside
``INDEX``) as soon as the scene is done: ``<key>.tif`` (its class map), ``<key>.npz``
(histograms and embeddings of its kept chips) and ``<key>.json`` (tile records and scene
metadata, written last: its presence marks the scene complete). ``key`` hashes the scene's id,
path, size and modification time (and its mask's), the checkpoint's, and every build option
that changes a scene's result (tile, stride, min_mass, classes, embeddings and their weights
files, precision). A rerun of an interrupted build reuses the scenes whose key matches and
predicts only the rest; the staging folder is removed once the index is written. The EMD
class order is applied when the index is assembled, so changing only it reuses every scene.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsseg.errors import RsSegError
from rsseg.io import atomic_path

STAGING_VERSION = 1


def staging_dir(out: Path) -> Path:
    """The staging folder of index ``out``: ``.<name>.partial`` in the same folder."""
    out = Path(out)
    return out.parent / f".{out.name}.partial"


def file_stamp(path: Path | None) -> list[Any] | None:
    """(resolved path, size, mtime in ns) of a file: a changed file gets a new key."""
    if path is None:
        return None
    st = Path(path).stat()
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]


def digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass
class SceneResult:
    """One indexed scene: metadata, tile records, (n, C) histograms, (n, D) embeddings."""

    key: str
    meta: dict[str, Any]
    tiles: list[dict[str, Any]]
    hist: np.ndarray
    vectors: dict[str, np.ndarray] = field(default_factory=dict)


class Staging:
    """Finished scenes of one build (``options``: what every scene's result depends on)."""

    def __init__(self, out: Path, options: dict[str, Any]) -> None:
        self.root = staging_dir(out)
        self.build = digest({"staging": STAGING_VERSION, **options})
        manifest = self.root / "build.json"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            previous = json.loads(manifest.read_text()).get("build") if manifest.is_file() else None
        except (OSError, ValueError, AttributeError):
            previous = None
        if previous != self.build:  # another build's leftovers: start afresh
            self.clear()
            try:
                self.root.mkdir(parents=True)
                with atomic_path(manifest) as tmp:
                    tmp.write_text(json.dumps({"build": self.build, "options": options}, indent=2, default=str))
            except OSError as exc:
                raise RsSegError(f"cannot create staging folder {self.root}: {exc.strerror or exc}") from None

    def scene_key(self, sid: str, scene: Path, mask: Path | None) -> str:
        return digest([self.build, sid, file_stamp(scene), file_stamp(mask)])

    def mask_path(self, key: str) -> Path:
        return self.root / f"{key}.tif"

    def load(self, key: str) -> SceneResult | None:
        """A finished scene's result, or None (never finished, or unreadable: redone)."""
        marker, arrays = self.root / f"{key}.json", self.root / f"{key}.npz"
        if not (marker.is_file() and arrays.is_file() and self.mask_path(key).is_file()):
            return None
        try:
            info = json.loads(marker.read_text())
            with np.load(arrays, allow_pickle=False) as npz:
                hist = npz["hist"]
                vectors = {name: npz[f"emb_{name}"] for name in info["embeddings"]}
            if hist.shape[0] != len(info["tiles"]) or any(len(v) != len(hist) for v in vectors.values()):
                return None
            return SceneResult(key, info["meta"], info["tiles"], hist, vectors)
        except (OSError, ValueError, KeyError, TypeError, EOFError):
            return None

    def save(self, result: SceneResult, write_mask: Any) -> None:
        """Stage a scene: ``write_mask(path)`` writes its class map; the JSON marker goes last."""
        try:
            with atomic_path(self.mask_path(result.key)) as tmp:
                write_mask(tmp)
            with atomic_path(self.root / f"{result.key}.npz") as tmp, open(tmp, "wb") as f:
                arrays = {"hist": result.hist, **{f"emb_{n}": v for n, v in result.vectors.items()}}
                np.savez(f, **arrays)
            info = {"meta": result.meta, "tiles": result.tiles, "embeddings": list(result.vectors)}
            with atomic_path(self.root / f"{result.key}.json") as tmp:
                tmp.write_text(json.dumps(info, separators=(",", ":")))
        except OSError as exc:
            raise RsSegError(f"cannot write to staging folder {self.root}: {exc.strerror or exc}") from None

    def place_mask(self, key: str, dst: Path) -> None:
        """Hard-link (else copy) a staged class map into the index being written."""
        src = self.mask_path(key)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
