"""On-disk cache of per-scene facts (sizes, class counts, band sums) and chip indices.

The data root may be read-only, so caches live in ``data.cache_dir``, by default
``$RSSEG_CACHE_DIR`` or ``$XDG_CACHE_HOME/rsseg`` (``~/.cache/rsseg``): one folder per dataset
root, shared by every run on it. Entries are keyed on file paths, sizes and modification times
(plus the tile size and mask decoding where they matter), so a changed file is simply re-read.
The cache is an optimisation: when it cannot be written, a warning is logged and work goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from rsseg.errors import RsSegError
from rsseg.io import atomic_path

log = logging.getLogger(__name__)

#: Bump when the meaning of cached records changes.
CACHE_VERSION = 1


def default_cache_root() -> Path:
    if os.environ.get("RSSEG_CACHE_DIR"):
        return Path(os.environ["RSSEG_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rsseg"


def digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def file_key(path: Path | None) -> list | None:
    """Path, size and mtime of a file: changes whenever the file is replaced or edited."""
    if path is None:
        return None
    try:
        st = Path(path).stat()
    except OSError as exc:
        raise RsSegError(f"{path}: cannot read file: {exc.strerror or exc}") from None
    return [str(Path(path).absolute()), st.st_size, st.st_mtime_ns]


class Cache:
    """A folder of JSON and .npy entries; ``directory=None`` disables it (nothing is stored)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self._warned = False

    def _path(self, name: str) -> Path | None:
        return None if self.directory is None else self.directory / name

    def load_json(self, name: str) -> Any:
        path = self._path(name)
        if path is None or not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            log.warning("ignoring unreadable cache file %s", path)
            return None
        return data if isinstance(data, dict) and data.get("version") == CACHE_VERSION else None

    def save_json(self, name: str, data: dict) -> None:
        self._write(name, lambda tmp: tmp.write_text(json.dumps({**data, "version": CACHE_VERSION})))

    def load_array(self, name: str) -> np.ndarray | None:
        path = self._path(name)
        if path is None or not path.exists():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            log.warning("ignoring unreadable cache file %s", path)
            return None

    def save_array(self, name: str, array: np.ndarray) -> None:
        def write(tmp: Path) -> None:
            with tmp.open("wb") as fh:
                np.save(fh, array, allow_pickle=False)

        self._write(name, write)

    def _write(self, name: str, write) -> None:
        path = self._path(name)
        if path is None:
            return
        try:
            with atomic_path(path) as tmp:
                write(tmp)
        except (OSError, RsSegError) as exc:
            if not self._warned:
                log.warning("cannot write the data cache in %s (%s); set data.cache_dir", self.directory, exc)
                self._warned = True
