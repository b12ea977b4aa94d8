"""Class maps -> polygons that fit together (GeoPackage, GeoParquet, GeoJSON), streamed in strips.

Regions are 4-connected pixels of one class (rasterio's ``shapes`` connectivity), so every
polygon follows pixel edges and rasterising the polygons back (pixel centres) gives the class
map exactly. The map is read in strips; a region cut by a strip boundary is joined with its
other pieces (a union-find over the two boundary rows) and its pieces are unioned in *pixel*
coordinates, where every vertex is an integer and shared edges match exactly, before the
affine transform takes it to map coordinates.

Memory contract: one strip of the class map (and of the confidence raster) plus its region
labels, the pieces of regions still open at the strip's lower edge, and the finished polygons
(vectors, small beside the raster) until they are written. ``min_area`` reads each strip with a
halo of rows (see ``_sieve``); ``simplify`` needs the whole coverage at once (it is a property
of shared edges) and runs on the finished polygons.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import shapes, sieve
from rasterio.windows import Window
from scipy import ndimage

from rsseg.errors import RsSegError
from rsseg.gis.areas import AreaMeter
from rsseg.gis.formats import suffix_of, write_polygons
from rsseg.gis.qml import polygon_style, write_style

#: ``max probability`` rasters (confidence, probabilities) store round(254 p); 255 is nodata.
CONF_SCALE = 254


@dataclass(frozen=True)
class VectorizeOptions:
    """How a class map becomes polygons."""

    format: str = "gpkg"
    simplify: float | None = None  # tolerance in map units (topology-preserving); None = exact edges
    min_area: float | None = None  # m² (pixel units without a CRS): smaller regions join their largest neighbour
    strip_rows: int = 1024
    # uint8 round(254 p) raster; None: a sibling _confidence/_probabilities.tif; False: none
    confidence: Path | bool | None = None


@dataclass
class VectorizeResult:
    path: Path
    polygons: int
    strips: int
    units: str  # "m2" or "pixel"
    confidence: Path | None
    style: Path | None  # the QGIS style sidecar
    warnings: list[str] = field(default_factory=list)


class _Regions:
    """Union-find over region ids, with each root's pieces and running sums."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.members: dict[int, list[int]] = {}
        self.cls: dict[int, int] = {}
        self.pixels: dict[int, int] = {}
        self.conf: dict[int, tuple[float, int]] = {}  # (sum, count) of finite confidences
        self.piece: dict[int, shapely.Geometry] = {}

    def add(self, gid: int, cls: int, pixels: int, conf: tuple[float, int], geom: shapely.Geometry) -> None:
        self.parent[gid], self.members[gid], self.cls[gid] = gid, [gid], cls
        self.pixels[gid], self.conf[gid], self.piece[gid] = pixels, conf, geom

    def find(self, gid: int) -> int:
        root = gid
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[gid] != root:
            self.parent[gid], gid = root, self.parent[gid]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if len(self.members[ra]) < len(self.members[rb]):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.members[ra] += self.members.pop(rb)
        self.pixels[ra] += self.pixels.pop(rb)
        (sa, na), (sb, nb) = self.conf[ra], self.conf.pop(rb)
        self.conf[ra] = (sa + sb, na + nb)

    def close(self, root: int) -> tuple[int, shapely.Geometry, int, float]:
        """(class, pixel-space polygon, pixels, confidence sum) of a finished region; forgets it."""
        members = self.members.pop(root)
        pieces = [self.piece.pop(m) for m in members]
        for m in members:
            del self.parent[m]
        cls = self.cls.pop(root)
        for m in members:
            self.cls.pop(m, None)
        if len(pieces) == 1:
            return cls, pieces[0], self.pixels.pop(root), self.conf.pop(root)
        # tolerance 0 drops the vertices left on strip boundaries (collinear, integer-exact)
        geom = shapely.simplify(shapely.union_all(pieces), 0)
        return cls, geom, self.pixels.pop(root), self.conf.pop(root)


def _components(strip: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected regions of equal class: int32 labels 1..n, 0 where not valid."""
    labels = np.zeros(strip.shape, np.int32)
    n = 0
    for value in np.unique(strip[valid]):
        lab, k = ndimage.label((strip == value) & valid)
        labels[lab > 0] = lab[lab > 0] + n
        n += k
    return labels, n


def _sieve(src, nodata, row: int, rows: int, halo: int, min_pixels: int) -> np.ndarray:
    """Rows ``row .. row+rows`` after merging regions under ``min_pixels`` into their largest
    neighbour (GDAL's sieve). A region that small spans fewer than ``min_pixels`` rows, so the
    halo holds all of it; its neighbours' sizes are counted within the halo (a neighbour larger
    than the halo counts as at least as large as the part seen)."""
    top, bottom = max(0, row - halo), min(src.height, row + rows + halo)
    data = src.read(1, window=Window(0, top, src.width, bottom - top))
    valid = data != nodata if nodata is not None else np.ones(data.shape, bool)
    sieved = sieve(data, min_pixels, mask=valid, connectivity=4)
    sieved[~valid] = data[~valid]
    return sieved[row - top: row - top + rows]


def default_vector_path(class_map: Path, fmt: str) -> Path:
    """``NAME_classes.tif`` -> ``NAME_polygons.gpkg`` (not ``NAME_classes.gpkg``: its QGIS style
    sidecar would take the name of the class map's own)."""
    stem = class_map.name.removesuffix(".tif").removesuffix("_classes")
    return class_map.with_name(stem + "_polygons" + suffix_of(fmt))


def _confidence_path(class_map: Path, given: Path | bool | None) -> Path | None:
    if given is False:
        return None
    if given is not None and given is not True:
        return Path(given)
    stem = class_map.name.removesuffix(".tif").removesuffix("_classes")
    for suffix in ("_confidence.tif", "_probabilities.tif"):
        candidate = class_map.with_name(stem + suffix)
        if candidate.exists():
            return candidate
    return None


def _read_confidence(src, window: Window) -> np.ndarray:
    """Max probability in [0, 1] per pixel (NaN where the raster has no value)."""
    data = src.read(window=window)
    top = data.max(axis=0).astype(np.float32) if data.shape[0] > 1 else data[0].astype(np.float32)
    top[top > CONF_SCALE] = np.nan
    return top / CONF_SCALE


def _regions(class_map: Path, options: VectorizeOptions, meter: AreaMeter) -> Iterator[tuple]:
    """Yield (class, pixel-space polygon, pixels, mean confidence or None) per region, strip by strip."""
    conf_path = _confidence_path(class_map, options.confidence)
    regions, next_id = _Regions(), 1
    prev_ids = prev_cls = None
    with rasterio.open(class_map) as src, (rasterio.open(conf_path) if conf_path else _Null()) as conf_src:
        if conf_src is not None and (conf_src.width, conf_src.height) != (src.width, src.height):
            raise RsSegError(f"{conf_path}: confidence raster is {conf_src.width} x {conf_src.height} px, "
                             f"the class map {class_map} is {src.width} x {src.height}")
        nodata = src.nodata
        min_pixels = meter.min_pixels(options.min_area)
        halo = min(min_pixels, src.height) if min_pixels > 1 else 0
        for row in range(0, src.height, options.strip_rows):
            rows = min(options.strip_rows, src.height - row)
            window = Window(0, row, src.width, rows)
            strip = _sieve(src, nodata, row, rows, halo, min_pixels) if halo else src.read(1, window=window)
            valid = strip != nodata if nodata is not None else np.ones(strip.shape, bool)
            labels, n = _components(strip, valid)
            counts = np.bincount(labels.ravel(), minlength=n + 1)
            conf_sum, conf_n = np.zeros(n + 1), np.zeros(n + 1)
            if conf_src is not None:
                conf = _read_confidence(conf_src, window)
                ok = np.isfinite(conf)
                conf_sum = np.bincount(labels[ok], weights=conf[ok], minlength=n + 1)
                conf_n = np.bincount(labels[ok], minlength=n + 1)
            label_cls = np.zeros(n + 1, np.int64)
            label_cls[labels.ravel()] = strip.ravel()  # every pixel of a region holds its class
            transform = rasterio.Affine.translation(0, row)  # pixel space, whole-scene rows
            for geom, label in shapes(labels, mask=labels > 0, connectivity=4, transform=transform):
                label = int(label)
                regions.add(next_id + label - 1, int(label_cls[label]), int(counts[label]),
                            (float(conf_sum[label]), int(conf_n[label])), shapely.geometry.shape(geom))
            ids = np.where(labels > 0, labels + (next_id - 1), 0)
            if prev_ids is not None:  # join regions that continue across the boundary
                same = (prev_ids > 0) & (ids[0] > 0) & (prev_cls == strip[0])
                for a, b in set(zip(prev_ids[same].tolist(), ids[0][same].tolist())):
                    regions.union(a, b)
            next_id += n
            prev_ids, prev_cls = ids[-1].copy(), strip[-1].copy()
            open_roots = {regions.find(g) for g in np.unique(prev_ids[prev_ids > 0]).tolist()}
            last = row + rows >= src.height
            for root in sorted(r for r in list(regions.members) if last or r not in open_roots):
                cls, geom, pixels, (csum, cn) = regions.close(root)
                yield cls, geom, pixels, (csum / cn if conf_src is not None and cn else None)


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def class_names(src) -> list[str] | None:
    """The class names a predicted map carries (its ``classes`` tag), if any."""
    try:
        names = json.loads(src.tags().get("classes", "null"))
    except json.JSONDecodeError:
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def vectorize_map(class_map: Path, out: Path | None = None, *,
                  options: VectorizeOptions = VectorizeOptions()) -> VectorizeResult:
    """Polygons of a class GeoTIFF, one per region, with class id and name, area (m²), pixel
    count and mean confidence; written atomically to ``out`` (default: beside the map)."""
    class_map = Path(class_map)
    if not class_map.is_file():
        raise RsSegError(f"class map not found: {class_map}")
    if options.strip_rows < 1:
        raise RsSegError(f"strip_rows must be at least 1, got {options.strip_rows}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(class_map) as src:
                if src.count != 1 or not np.issubdtype(np.dtype(src.dtypes[0]), np.integer):
                    raise RsSegError(f"{class_map}: expected a one-band integer class map, "
                                     f"got {src.count} band(s) of {src.dtypes[0]}")
                meter = AreaMeter.of(src, class_map)
                names = class_names(src)
                colors = _colors(src)
                transform = src.transform
            meter.check_simplify(options.simplify, class_map)
            out = Path(out) if out is not None else default_vector_path(class_map, options.format)
            records = list(_regions(class_map, options, meter))
    except rasterio.errors.RasterioIOError as exc:
        raise RsSegError(f"{class_map}: cannot read the class map: {exc}") from None
    geoms = np.array([g for _, g, _, _ in records], dtype=object)
    if options.simplify:
        # a vertex at every pixel corner: where three regions meet, the straight edge of the
        # third has none, and coverage simplification needs matching vertices on shared edges
        geoms = meter.to_map(shapely.segmentize(geoms, 1.0), transform)
        geoms = shapely.coverage_simplify(geoms, options.simplify)
    else:
        geoms = meter.to_map(geoms, transform)
    strips = math.ceil(meter.height / options.strip_rows)
    conf_path = _confidence_path(class_map, options.confidence)
    table = {
        "class_id": [c for c, _, _, _ in records],
        "class_name": [names[c] if names and c < len(names) else f"class_{c}" for c, _, _, _ in records],
        "area_m2": meter.areas(geoms),
        "pixels": [p for _, _, p, _ in records],
        "mean_confidence": [m for _, _, _, m in records],
    }
    metadata = {"source": class_map.name, "area_units": meter.units, "connectivity": 4,
                "simplify": options.simplify, "min_area": options.min_area,
                "confidence": conf_path.name if conf_path else None}
    if meter.note:
        metadata["note"] = meter.note
    write_polygons(out, options.format, table, geoms, meter.crs, metadata)
    style = None
    if names and colors:
        style = write_style(out, polygon_style(names, [colors.get(i, (128, 128, 128)) for i in range(len(names))]))
    return VectorizeResult(out, len(records), strips, meter.units, conf_path, style,
                           [meter.note] if meter.note else [])


def _colors(src) -> dict[int, tuple[int, int, int]] | None:
    try:
        return {i: tuple(c[:3]) for i, c in src.colormap(1).items()}
    except ValueError:  # no colour table
        return None
