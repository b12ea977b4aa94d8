"""Vector labels (GeoJSON, GeoPackage, Shapefile, ...) burnt into class masks on an image's grid.

Many real datasets ship polygons, not masks. Reading, class mapping and geometry repair happen
once (``load_vector``); ``VectorLabels.rasterize`` then burns them onto any grid, the vectors
reprojected to the grid's CRS. Needs the optional packages pyogrio, shapely and pyproj.

Choices a user must know about:

* ``background`` fills pixels no feature covers. Use a class (0) only where every object of
  interest was digitised; for partial labels (a few roads, sample polygons) use ``IGNORE_INDEX``
  so unlabelled ground is left out of loss and metrics instead of taught as background.
* ``burn_order="area"`` (default): larger features first, so smaller ones (a building in a
  field) stay on top; ``"file"``: later features on top. Points and lines, area 0, land last.
* ``buffer_pixels`` widens points and lines by that many pixels of the target grid.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.features import rasterize as _burn

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.data.xyz import GridSpec, grid_of, write_raster
from rsseg.errors import RsSegError

__all__ = ["GridSpec", "VectorLabels", "load_vector", "rasterize_vector", "vector_masks", "write_vector_mask"]

UNKNOWN_POLICIES = ("error", "ignore", "default", "skip")
BURN_ORDERS = ("area", "file")
READ_OPTIONS = ("attribute", "mapping", "default_class", "unknown", "classes", "layer", "encoding", "vector_crs", "repair")
BURN_OPTIONS = ("background", "all_touched", "buffer_pixels", "burn_order")
CACHE_VERSION = 1
_SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")


def _geo():
    try:
        import pyogrio
        import pyogrio.raw
        import pyproj
        import shapely
    except ImportError as exc:
        raise RsSegError(f"vector labels need pyogrio, shapely and pyproj; {exc.name} is not installed") from None
    return pyogrio, shapely, pyproj


def class_index(value: int | str, names: Sequence[str] | None, what: str) -> int:
    """A mask value from a class index, a class name, or ``"ignore"`` (IGNORE_INDEX)."""
    if isinstance(value, str):
        if names is not None and value in names:
            return list(names).index(value)
        if value == "ignore":
            return IGNORE_INDEX
        known = f"; classes are {', '.join(names)}" if names else " (no class names were given)"
        raise RsSegError(f"{what}: unknown class name '{value}'{known}")
    if isinstance(value, bool) or not float(value).is_integer():
        raise RsSegError(f"{what}: class {value!r} is neither a class index nor a class name")
    index = int(value)
    top = len(names) - 1 if names is not None else IGNORE_INDEX - 1
    if index != IGNORE_INDEX and not 0 <= index <= top:
        raise RsSegError(f"{what}: class index {index} is outside 0..{top} (or {IGNORE_INDEX} = ignore)")
    return index


def _norm(value: Any) -> Any:
    """Attribute value as a plain, hashable Python value: 3.0 -> 3, NaN -> None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return int(value)
    return value


@dataclass
class VectorLabels:
    """Features read from one vector file: geometries in ``crs`` and their mask values."""

    path: Path
    crs: Any  # pyproj.CRS
    geometries: np.ndarray  # shapely geometries
    values: np.ndarray  # uint8 mask value per geometry
    class_names: tuple[str, ...] | None = None
    stats: dict[str, int] = field(default_factory=dict)
    _tree: Any = field(default=None, repr=False)

    def rasterize(
        self,
        like: Path | GridSpec,
        *,
        background: int | str = 0,
        all_touched: bool = False,
        buffer_pixels: float = 0.0,
        burn_order: str = "area",
        xyz_pattern: str | None = None,
    ) -> np.ndarray:
        """uint8 (H, W) mask on ``like``'s grid; features outside the grid are skipped."""
        _, shapely, pyproj = _geo()
        grid = grid_of(like, xyz_pattern)
        fill = class_index(background, self.class_names, "background")
        if burn_order not in BURN_ORDERS:
            raise RsSegError(f"burn_order must be one of {', '.join(BURN_ORDERS)}, not '{burn_order}'")
        if buffer_pixels < 0:
            raise RsSegError(f"buffer_pixels must be >= 0, got {buffer_pixels}")
        out = np.full(grid.shape, fill, dtype=np.uint8)
        if len(self.geometries) == 0:
            return out
        dst = pyproj.CRS.from_wkt(grid.crs.to_wkt())
        margin = (buffer_pixels + 1) * grid.pixel_size
        left, bottom, right, top = grid.bounds
        area = shapely.box(left - margin, bottom - margin, right + margin, top + margin)
        idx = self._candidates(shapely, pyproj, dst, area)
        geoms = self.geometries[idx]
        if not self.crs.equals(dst, ignore_axis_order=True):
            fwd = pyproj.Transformer.from_crs(self.crs, dst, always_xy=True)
            geoms = shapely.transform(geoms, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))
        keep = shapely.intersects(geoms, area) & np.isfinite(shapely.bounds(geoms)).all(axis=1)
        geoms, idx = geoms[keep], idx[keep]
        if buffer_pixels > 0:
            thin = shapely.get_dimensions(geoms) < 2
            geoms = geoms.copy()
            geoms[thin] = shapely.buffer(geoms[thin], buffer_pixels * grid.pixel_size)
        if burn_order == "area":
            order = np.argsort(-shapely.area(geoms), kind="stable")
            geoms, idx = geoms[order], idx[order]
        if len(geoms):
            shapes = zip(geoms, self.values[idx].tolist(), strict=True)
            _burn(shapes, out=out, transform=grid.transform, all_touched=all_touched)
        return out

    def _candidates(self, shapely, pyproj, dst, area) -> np.ndarray:
        """Indices of features near the grid: a quick spatial-index test in the vector's CRS."""
        box = shapely.bounds(area)
        if not self.crs.equals(dst, ignore_axis_order=True):
            to_src = pyproj.Transformer.from_crs(dst, self.crs, always_xy=True)
            try:
                box = to_src.transform_bounds(*box, densify_pts=21)
            except pyproj.exceptions.ProjError:
                return np.arange(len(self.geometries))
            if not np.isfinite(box).all() or box[0] > box[2]:  # unprojectable or across the antimeridian
                return np.arange(len(self.geometries))
        if self._tree is None:
            self._tree = shapely.STRtree(self.geometries)
        return np.sort(self._tree.query(shapely.box(*box)))


def _read(path: Path, layer: str | int | None, encoding: str | None, attribute: str | None):
    pyogrio, _, _ = _geo()
    if not path.exists():
        raise RsSegError(f"vector labels not found: {path}")
    try:
        listed = pyogrio.list_layers(path)
    except Exception as exc:  # noqa: BLE001 - GDAL's errors differ by driver
        raise RsSegError(f"{path} is not a readable vector file: {exc}") from None
    layers = [str(name) for name, _ in listed]
    spatial = [str(name) for name, kind in listed if kind is not None]  # GeoPackages may hold plain tables
    if layer is None and len(spatial) == 1:
        layer = spatial[0]
    elif layer is None and len(layers) > 1:
        raise RsSegError(f"{path} has {len(layers)} layers ({', '.join(layers)}): choose one with `layer`")
    if isinstance(layer, str) and layer not in layers:
        raise RsSegError(f"{path}: unknown layer '{layer}'; layers: {', '.join(layers)}")
    if isinstance(layer, int) and not 0 <= layer < len(layers):
        raise RsSegError(f"{path}: layer index {layer} is outside 0..{len(layers) - 1}")
    info = pyogrio.read_info(path, layer=layer, encoding=encoding)
    fields = [str(f) for f in info["fields"]]
    if attribute is not None and attribute not in fields:
        raise RsSegError(f"{path}: no attribute '{attribute}'; attributes: {', '.join(fields) or 'none'}")
    try:
        meta, _, wkb, data = pyogrio.raw.read(
            path, layer=layer, encoding=encoding, columns=[attribute] if attribute else []
        )
    except UnicodeDecodeError as exc:
        raise RsSegError(f"{path}: cannot decode text attributes ({exc.reason}); set `encoding`, e.g. latin1") from None
    except Exception as exc:  # noqa: BLE001
        raise RsSegError(f"cannot read {path}: {exc}") from None
    return meta, wkb, (data[0] if attribute else None)


def _feature_values(path, n, raw, attribute, mapping, default, unknown, names) -> np.ndarray:
    """Mask value per feature, or -1 for features to skip; unknown values reported together."""
    if attribute is None:
        return np.full(n, default, dtype=np.int16)
    lookup: dict[Any, int] = {}
    for key, cls in (mapping or {}).items():
        index = class_index(cls, names, f"{path}: mapping[{key!r}]")
        lookup[_norm(key)] = index
        lookup.setdefault(str(_norm(key)), index)
    out = np.empty(n, dtype=np.int16)
    missing: Counter = Counter()
    for i, value in enumerate(raw):
        v = _norm(value)
        hit = lookup.get(v, lookup.get(str(v))) if v is not None else None
        if hit is None and mapping is None and v is not None:  # the attribute holds classes itself
            try:
                hit = class_index(v, names, "")
            except (RsSegError, TypeError, ValueError):
                hit = None
        if hit is None:
            missing[v] += 1
            hit = {"ignore": IGNORE_INDEX, "default": default, "skip": -1}.get(unknown, -1)
        out[i] = hit
    if missing and unknown == "error":
        listed = ", ".join(
            f"{'<null>' if v is None else repr(v)} ({c} feature{'s' * (c != 1)})" for v, c in missing.most_common(20)
        )
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        how = "add them to `mapping`" if mapping is not None else "give a `mapping`"
        raise RsSegError(
            f"{path}: attribute '{attribute}' has values with no class: {listed}{more}; "
            f"{how} or set unknown to ignore, default or skip"
        )
    return out


def _fix_geometries(path: Path, geoms: np.ndarray, ids: np.ndarray, repair: bool) -> tuple[np.ndarray, int]:
    """make_valid invalid geometries, keeping only parts of the original dimension."""
    _, shapely, _ = _geo()
    bad = np.flatnonzero(~shapely.is_valid(geoms))
    if len(bad) and not repair:
        reasons = "; ".join(f"feature #{ids[i]}: {shapely.is_valid_reason(geoms[i])}" for i in bad[:5])
        raise RsSegError(f"{path}: {len(bad)} invalid geometries ({reasons}); set repair=True to fix them")
    for i in bad:
        dim = shapely.get_dimensions(geoms[i])
        fixed = shapely.make_valid(geoms[i])
        parts = [p for p in shapely.get_parts(fixed) if shapely.get_dimensions(p) == dim]
        geoms[i] = shapely.union_all(parts) if parts else None
    return geoms, len(bad)


def load_vector(
    vector: Path,
    *,
    attribute: str | None = None,
    mapping: Mapping[Any, int | str] | None = None,
    default_class: int | str = 1,
    unknown: str = "error",
    classes: ClassTable | Sequence[str] | None = None,
    layer: str | int | None = None,
    encoding: str | None = None,
    vector_crs: str | None = None,
    repair: bool = True,
) -> VectorLabels:
    """Read features and give each a mask value: ``mapping[attribute value]`` or ``default_class``.

    No ``attribute``: every feature is ``default_class``. ``attribute`` without ``mapping``: the
    attribute holds class indices (or names). Classes are indices, names of ``classes`` or
    ``"ignore"``. Values with no class: ``unknown`` = error (lists them), ignore, default or skip.
    ``vector_crs`` overrides the file's CRS (or supplies a missing one).
    """
    _, shapely, pyproj = _geo()
    path = Path(vector)
    if unknown not in UNKNOWN_POLICIES:
        raise RsSegError(f"unknown must be one of {', '.join(UNKNOWN_POLICIES)}, not '{unknown}'")
    if mapping is not None and attribute is None:
        raise RsSegError(f"{path}: a class `mapping` needs the `attribute` whose values it maps")
    names = None if classes is None else tuple(map(str, getattr(classes, "names", classes)))
    default = class_index(default_class, names, "default_class")
    meta, wkb, raw = _read(path, layer, encoding, attribute)
    crs_text = vector_crs or meta.get("crs")
    if not crs_text:
        raise RsSegError(f"{path} has no CRS; fix the file (e.g. add a .prj) or set vector_crs")
    try:
        crs = pyproj.CRS.from_user_input(crs_text)
    except pyproj.exceptions.CRSError as exc:
        raise RsSegError(f"{path}: CRS {crs_text!r} is not understood: {exc}") from None
    geoms = shapely.force_2d(shapely.from_wkb(wkb)) if len(wkb) else np.array([], dtype=object)
    values = _feature_values(path, len(wkb), raw, attribute, mapping, default, unknown, names)
    keep = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms)) & (values >= 0)
    geoms, values = geoms[keep], values[keep]
    geoms, repaired = _fix_geometries(path, geoms, np.flatnonzero(keep), repair)
    ok = ~shapely.is_missing(geoms)
    geoms, values = geoms[ok], values[ok]
    box = shapely.total_bounds(geoms)
    if crs.is_geographic and len(geoms) and (abs(box[[0, 2]]).max() > 360 or abs(box[[1, 3]]).max() > 90):
        raise RsSegError(
            f"{path}: coordinates {box.round(1).tolist()} are not degrees but the file says {crs_text}; "
            "set vector_crs to the CRS they are in (GeoJSON without a 'crs' member is taken as EPSG:4326)"
        )
    stats = {"features": len(wkb), "used": len(geoms), "repaired": repaired}
    return VectorLabels(path, crs, geoms, values.astype(np.uint8), names, stats)


def _split(opts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    extra = set(opts) - set(READ_OPTIONS) - set(BURN_OPTIONS)
    if extra:
        raise TypeError(f"unknown vector label options: {', '.join(sorted(extra))}")
    return {k: v for k, v in opts.items() if k in READ_OPTIONS}, {k: v for k, v in opts.items() if k in BURN_OPTIONS}


def rasterize_vector(
    vector: Path,
    like: Path | GridSpec,
    *,
    attribute: str | None = None,
    mapping: Mapping[Any, int | str] | None = None,
    default_class: int | str = 1,
    background: int | str = 0,
    all_touched: bool = False,
    layer: str | int | None = None,
    encoding: str | None = None,
    xyz_pattern: str | None = None,
    **opts: Any,
) -> np.ndarray:
    """uint8 (H, W) class mask of ``vector`` on the grid of ``like`` (a raster, a GridSpec, or an
    XYZ chip placed by its name with ``xyz_pattern``). More options: ``load_vector`` (unknown,
    classes, vector_crs, repair) and ``VectorLabels.rasterize`` (buffer_pixels, burn_order)."""
    read, burn = _split(opts)
    labels = load_vector(vector, attribute=attribute, mapping=mapping, default_class=default_class,
                         layer=layer, encoding=encoding, **read)
    return labels.rasterize(like, background=background, all_touched=all_touched, xyz_pattern=xyz_pattern, **burn)


def write_vector_mask(
    vector: Path | VectorLabels, image: Path | GridSpec, out_path: Path, *, xyz_pattern: str | None = None, **opts: Any
) -> Path:
    """Rasterise onto ``image``'s grid into a tiled deflate GeoTIFF (written atomically, nodata 255).

    With a ``ClassTable`` as ``classes`` its colours become the colour table.
    """
    read, burn = _split(opts)
    labels = vector if isinstance(vector, VectorLabels) else load_vector(vector, **read)
    grid = grid_of(image, xyz_pattern)
    classes = read.get("classes")
    lut = classes.palette() if isinstance(classes, ClassTable) else None
    return write_raster(labels.rasterize(grid, **burn), grid, out_path, nodata=IGNORE_INDEX, colormap=lut)


def _file_digest(path: Path) -> str:
    """Content hash of a vector file (with its shapefile side files; a folder: all its files)."""
    if not path.exists():
        raise RsSegError(f"vector labels not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
    elif path.suffix.lower() == ".shp":
        files = [p for p in sorted(path.parent.glob(glob.escape(path.stem) + ".*")) if p.suffix.lower() in _SIDECARS]
    else:
        files = [path]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _options_key(opts: dict[str, Any]) -> dict[str, Any]:
    out = dict(opts)
    if isinstance(out.get("classes"), ClassTable):
        out["classes"] = list(out["classes"].names)
    if out.get("mapping") is not None:
        out["mapping"] = sorted([str(_norm(k)), type(_norm(k)).__name__, v] for k, v in out["mapping"].items())
    return out


def vector_masks(
    images: Sequence[Path], vector: Path, cache_dir: Path, *, xyz_pattern: str | None = None, **opts: Any
) -> list[Path]:
    """One mask per image in ``cache_dir``, rebuilt only when its grid, the vector file or the options change.

    The key hashes the image's grid (CRS, transform, size: all a mask depends on), the vector
    file's bytes and the options; the vector is read only if a mask must be built, stale masks of
    the same image are removed.
    """
    read, _ = _split(opts)
    cache_dir, vector = Path(cache_dir), Path(vector)
    digest = _file_digest(vector)
    labels: VectorLabels | None = None
    out: list[Path] = []
    for image in map(Path, images):
        grid = grid_of(image, xyz_pattern)
        key = json.dumps(
            {"v": CACHE_VERSION, "vector": digest, "opts": _options_key(opts),
             "grid": [grid.crs.to_wkt(), list(grid.transform)[:6], grid.height, grid.width]},
            sort_keys=True, default=str,
        )
        tag = hashlib.sha256(str(image.resolve()).encode()).hexdigest()[:8]
        target = cache_dir / f"{image.stem}.{tag}.{hashlib.sha256(key.encode()).hexdigest()[:16]}.tif"
        if not target.exists():
            labels = labels or load_vector(vector, **read)
            write_vector_mask(labels, grid, target, **opts)
            for stale in cache_dir.glob(f"{glob.escape(image.stem)}.{tag}.*.tif"):
                if stale != target:
                    stale.unlink(missing_ok=True)
        out.append(target)
    return out
