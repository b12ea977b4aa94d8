"""Search an index by tile id or by image, with EMD, spatial scores or embeddings.

Methods (``by``): ``emd`` (closed form over the class order, or any ground distance through
POT); ``miou``, ``wiou``, ``pixel-precision`` (``spatial`` = ``miou``), the seed's spatial
scores, higher is better; ``backbone`` (L1, seed §5.2.2), ``vit`` / ``encoder`` (the index's
only ViT / pretrained-encoder embedding, L2) or any embedding name, e.g.
``encoder-geoembed-aerial-resnet18``, optionally ``NAME:l1`` / ``NAME:l2``. A tile-id query never returns itself.
``Searcher.query_mask`` queries by a class map (EMD and spatial scores only).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from rsseg.errors import RsSegError
from rsseg.io import atomic_write_text, ensure_writable_dir
from rsseg.retrieval.distances import confusions, emd_pot, spatial_scores
from rsseg.retrieval.index import RetrievalIndex
from rsseg.retrieval.search import EmdSearcher, knn_vectors, rank_scores

MASK_CACHE_BYTES = 2**30
SPATIAL = {"miou": "miou", "wiou": "wiou", "pixel-precision": "pixel_precision", "spatial": "miou"}
#: ``--by KIND``: the index's one embedding of that kind (and the build option that adds one)
KIND_ALIASES = {"vit": "--vit", "encoder": "--embed encoder=SOURCE"}


@dataclass(frozen=True)
class Method:
    name: str  # canonical: emd, miou, wiou, pixel-precision, NAME:l1, NAME:l2
    kind: str  # emd | spatial | embedding
    key: str  # spatial score key or embedding name
    metric: str | None = None


def resolve_method(index: RetrievalIndex, by: str) -> Method:
    if by == "emd":
        return Method("emd", "emd", "emd")
    if by in SPATIAL:
        name = "miou" if by == "spatial" else by
        return Method(name, "spatial", SPATIAL[by])
    name, _, metric = by.partition(":")
    kinds = {n: index.embedding_info(n)["kind"] for n in index.embedding_names}
    if name in KIND_ALIASES:
        of_kind = [n for n, k in kinds.items() if k == name]
        if len(of_kind) != 1:
            have = ", ".join(of_kind) if of_kind else f"none (build with {KIND_ALIASES[name]})"
            raise RsSegError(f"'{name}' needs exactly one {name} embedding in {index.path}; it has: {have}")
        name = of_kind[0]
    if name not in index.embedding_names:
        known = ["emd", *SPATIAL, *index.embedding_names, *sorted(set(kinds.values()) & set(KIND_ALIASES))]
        raise RsSegError(f"unknown search method '{by}' for index {index.path}; available: {', '.join(known)}")
    metric = metric or index.embedding_info(name)["metric"]
    if metric not in ("l1", "l2"):
        raise RsSegError(f"unknown metric '{metric}' in '{by}'; use l1 or l2")
    return Method(f"{name}:{metric}", "embedding", name, metric)


def default_methods(index: RetrievalIndex) -> list[str]:
    """Methods compared with EMD: the spatial scores and every embedding of the index in its
    metric (the backbone in L1 and L2, as seed Table 3)."""
    out = ["miou", "wiou", "pixel-precision"]
    for name in index.embedding_names:
        metric = index.embedding_info(name).get("metric", "l2")
        out += [f"{name}:l1", f"{name}:l2"] if name == "backbone" else [f"{name}:{metric}"]
    return out


@dataclass
class Query:
    label: str
    row: int | None
    hist: np.ndarray
    cumulative: np.ndarray
    mask: np.ndarray
    raw: np.ndarray | None = None  # (C, H, W) pixels of an image query


class Searcher:
    """An index with what searches need loaded once: EMD structure, masks, models."""

    def __init__(self, index: RetrievalIndex | Path | str, checkpoint: Path | None = None) -> None:
        self.index = index if isinstance(index, RetrievalIndex) else RetrievalIndex(Path(index))
        self.checkpoint = Path(checkpoint) if checkpoint else Path(self.index.manifest["checkpoint"])
        self._masks: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._embedders: dict[str, Any] = {}  # embedding name -> chip -> vector function

    @cached_property
    def emd(self) -> EmdSearcher:
        return EmdSearcher(self.index.cumulative)

    @cached_property
    def predictor(self):
        # lazy: torch, only when a query needs the model
        from rsseg.trained.checkpoint import load_predictor
        from rsseg.retrieval.scenes import effective_classes

        if not self.checkpoint.is_file():
            raise RsSegError(
                f"checkpoint {self.checkpoint} of index {self.index.path} not found; "
                "pass the checkpoint to search by image"
            )
        predictor = load_predictor(self.checkpoint)
        self.index.check_classes(effective_classes(predictor), f"checkpoint {self.checkpoint}")
        return predictor

    def mask_blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows, (n, t, t) chip masks) scene by scene; kept in memory when under 1 GiB."""
        if self._masks is not None:
            yield from self._masks
            return
        blocks, by_scene = [], {}
        for row, t in enumerate(self.index.tiles):
            by_scene.setdefault(t["scene"], []).append(row)
        keep = self.index.count * self.index.tile**2 <= MASK_CACHE_BYTES
        for rows in by_scene.values():
            block = (np.asarray(rows), self.index.chip_masks(rows))
            if keep:
                blocks.append(block)
            yield block
        if keep:
            self._masks = blocks

    def label(self, query: str | Path) -> str:
        """Name of a query in output file names: the tile id, or the image's stem."""
        text = str(query)
        return text if not isinstance(query, Path) and text in self.index.rows else Path(text).stem

    def query(self, query: str | Path) -> Query:
        """A tile id of the index, else an image file (predicted with the index's checkpoint)."""
        text = str(query)
        if not isinstance(query, Path) and text in self.index.rows:
            row = self.index.rows[text]
            mask = self.index.chip_masks([row])[0]
            return Query(text, row, self.index.signatures[row].astype(np.float64),
                         self.index.cumulative[row], mask)
        path = Path(text)
        if not path.exists():
            if not isinstance(query, Path) and (re.fullmatch(r".+:\d+:\d+", text) or not path.suffix):
                self.index.row_of(text)  # raises, naming close tile ids
            raise RsSegError(f"query image not found: {path} (nor is it a tile id of {self.index.path})")
        # lazy: rasterio and torch, only for an image query
        from rsseg.infer import read_image
        from rsseg.retrieval.scenes import band_count, predict_scene

        self.predictor.check_bands(band_count(path), path)
        image, profile = read_image(path)
        mask = predict_scene(self.predictor, image, profile.get("nodata"))
        hist, mass = self.index.space.signatures(mask)
        if mass <= 0:
            raise RsSegError(f"query {path}: no pixel of an evaluated class was predicted")
        return Query(path.stem, None, hist, self.index.space.cumulative(hist), mask, image)

    def query_mask(self, mask: np.ndarray, label: str = "mask") -> Query:
        """A query from a (H, W) class map in the index's class indices (255: no label), e.g.
        a ground-truth mask or a prediction made elsewhere; no model is needed."""
        mask = np.asarray(mask)
        if mask.ndim != 2 or mask.size == 0:
            raise RsSegError(f"query mask '{label}' must be a non-empty (H, W) class map, got shape {mask.shape}")
        classes = self.index.classes
        bad = (mask < 0) | ((mask >= classes.num_classes) & (mask != 255))
        if bad.any():
            raise RsSegError(f"query mask '{label}': values {sorted(np.unique(mask[bad]).tolist())[:10]} are not classes")
        mask = mask.astype(np.uint8)
        hist, mass = self.index.space.signatures(mask)
        if mass <= 0:
            raise RsSegError(f"query mask '{label}' has no pixel of an evaluated class")
        return Query(label, None, hist, self.index.space.cumulative(hist), mask)

    def embedding(self, query: Query, name: str) -> np.ndarray:
        if query.row is not None:
            return np.asarray(self.index.embeddings(name)[query.row])
        info = self.index.embedding_info(name)
        if query.raw is None:
            raise RsSegError(f"query '{query.label}' is a class map without pixels: search it by emd or spatial scores")
        if name not in self._embedders:
            # lazy: torch, only for embedding searches
            from rsseg.retrieval.embeddings import make_embedder

            self._embedders[name] = make_embedder(info["kind"], info, self.predictor,
                                                  self.index.manifest.get("rgb_bands"))
        return self._embedders[name](query.raw[None])[0]

    def rank(self, query: Query, method: Method, k: int, ground: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """-> (values, rows) of the k best; distances ascending or scores descending."""
        exclude = frozenset() if query.row is None else frozenset({query.row})
        if method.kind == "emd" and ground is None:
            return self.emd.search(query.cumulative, k, exclude)
        if method.kind == "emd":
            d = np.asarray([emd_pot(query.hist, s, ground) for s in self.index.signatures])
            return knn_vectors(d[:, None], np.zeros(1), k, "l1", exclude)
        if method.kind == "spatial":
            if query.mask.shape != (self.index.tile, self.index.tile):
                raise RsSegError(
                    f"spatial scores compare masks pixel by pixel: the query is {query.mask.shape[1]}x"
                    f"{query.mask.shape[0]}, index tiles are {self.index.tile}x{self.index.tile}"
                )
            lut, c = self.index.space.lut(), self.index.space.dim
            scores = np.empty(self.index.count)
            for rows, chips in self.mask_blocks():
                for lo in range(0, len(rows), 256):
                    cm = confusions(query.mask, chips[lo : lo + 256], lut, c)
                    scores[rows[lo : lo + 256]] = spatial_scores(cm)[method.key]
            return rank_scores(scores, k, exclude)
        return knn_vectors(self.index.embeddings(method.key), self.embedding(query, method.key), k, method.metric, exclude)

    def results(self, query: Query, method: Method, k: int, ground: np.ndarray | None = None) -> list[dict[str, Any]]:
        values, rows = self.rank(query, method, k, ground)
        field = "score" if method.kind == "spatial" else "distance"
        out = []
        for i, (v, r) in enumerate(zip(values, rows, strict=True)):
            t = self.index.tiles[int(r)]
            crs = self.index.scenes[t["scene"]].get("crs")
            out.append({"rank": i + 1, "tile_id": t["id"], field: float(v), "method": method.name,
                        "scene": t["scene"], "x": t["x"], "y": t["y"], "width": t["width"],
                        "height": t["height"], "bounds": t["bounds"], "crs": crs})
        return out


def output_paths(out: Path, label: str, by: str) -> tuple[Path, Path]:
    """``OUT/<query>_<method>.json`` and ``.png`` (characters unsafe in file names become _)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{label}_{by}")
    return Path(out) / f"{stem}.json", Path(out) / f"{stem}.png"


def load_ground(path: Path, dim: int) -> np.ndarray:
    """A (C, C) ground-distance matrix from .npy, .json (nested list) or .csv/.txt."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            m = np.load(path, allow_pickle=False)
        elif path.suffix == ".json":
            m = np.asarray(json.loads(path.read_text()), dtype=np.float64)
        else:
            m = np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None)
    except (OSError, ValueError) as exc:
        raise RsSegError(f"cannot read ground distance {path}: {exc}") from None
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (dim, dim) or np.any(m < 0) or not np.all(np.isfinite(m)):
        raise RsSegError(f"{path}: ground distance must be a non-negative ({dim}, {dim}) matrix, got {m.shape}")
    return m


def search_index(
    index: RetrievalIndex | Path | str, query: str | Path, k: int = 10, by: str = "emd",
    out: Path | None = None, *, checkpoint: Path | None = None, ground: np.ndarray | None = None,
    searcher: Searcher | None = None,
) -> list[dict[str, Any]]:
    """Rank the index against a tile id or image; with ``out``, write the JSON list and a
    gallery PNG there (``output_paths``). ``ground``: (C, C) EMD ground distance (POT)."""
    # lazy: matplotlib, only with --out
    from rsseg.retrieval.gallery import Panel, save_gallery

    if k < 1:
        raise RsSegError(f"k must be at least 1, got {k}")
    s = searcher or Searcher(index, checkpoint)
    method = resolve_method(s.index, by)
    if ground is not None and method.kind != "emd":
        raise RsSegError("a ground distance applies to --by emd only")
    q = s.query(query)
    results = s.results(q, method, k, ground)
    if out is not None:
        json_path, png_path = output_paths(ensure_writable_dir(Path(out)), q.label, method.name)
        atomic_write_text(json_path, json.dumps(results, indent=2))
        # lazy: torch (embeddings), only for gallery previews
        from rsseg.retrieval.embeddings import to_rgb8

        bands = s.index.manifest.get("rgb_bands")
        qrgb = to_rgb8(q.raw, bands) if q.raw is not None else _rgb_of(s.index, q.row, bands)
        panels = [Panel(f"query\n{q.label}", qrgb, q.mask)]
        field = "score" if method.kind == "spatial" else "distance"
        for r in results:
            row = s.index.rows[r["tile_id"]]
            panels.append(Panel(f"#{r['rank']} {field[0]}={r[field]:.4f}\n{r['tile_id']}",
                                _rgb_of(s.index, row, bands), s.index.chip_masks([row])[0]))
        save_gallery(png_path, panels, s.index.classes, suptitle=f"search by {method.name}")
    return results


def _rgb_of(index: RetrievalIndex, row: int, bands: list[int] | None) -> np.ndarray | None:
    # lazy: torch (embeddings), only for gallery previews
    from rsseg.retrieval.embeddings import to_rgb8

    raw = index.chip_image(row)
    return to_rgb8(raw, bands) if raw is not None else None
