"""Areas of polygons in square metres, whatever the map's CRS.

Projected CRS: the planar area times the square of the CRS's metres per unit. Geographic CRS:
the area on the CRS's own ellipsoid (pyproj ``Geod``). No CRS: polygons stay in the map's
(pixel) units, areas are left empty, and the output says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import shapely

from rsseg.errors import RsSegError

#: ``--simplify`` beyond this many pixels' worth of map units is a mistake (units mixed up).
MAX_SIMPLIFY_PIXELS = 100


def check_simplify(tolerance: float | None, transform, path: Path) -> None:
    """Refuse a ``--simplify`` tolerance outside (0, 100 pixels] of ``transform``'s map units.

    Needs only the grid, so ``rsseg predict`` runs it on the input before the model does."""
    if tolerance is None:
        return
    pixel = math.hypot(transform.a, transform.d)
    if tolerance <= 0 or tolerance > MAX_SIMPLIFY_PIXELS * pixel:
        raise RsSegError(f"--simplify {tolerance} is outside (0, {MAX_SIMPLIFY_PIXELS * pixel:g}] map units "
                         f"for {path} ({MAX_SIMPLIFY_PIXELS} pixels of {pixel:g}; simplify is in map units)")


@dataclass(frozen=True)
class AreaMeter:
    crs: object | None  # rasterio CRS
    transform: object  # rasterio Affine
    height: int
    width: int
    units: str  # "m2" or "pixel"
    note: str | None

    @classmethod
    def of(cls, src, path: Path) -> AreaMeter:
        crs = src.crs if src.crs else None
        note = None
        if crs is None:
            note = (f"{path} has no CRS: polygons are in its pixel/map units and areas are not in m² "
                    f"(area_m2 left empty; see the pixels column)")
        return cls(crs, src.transform, src.height, src.width, "m2" if crs else "pixel", note)

    def _geod(self):
        import pyproj

        return pyproj.CRS.from_wkt(self.crs.to_wkt()).get_geod()

    def _metres_per_unit(self) -> float:
        return float(self.crs.linear_units_factor[1])

    def pixel_area(self) -> float:
        """Area of a pixel at the map's centre: m², or 1 (pixel units) without a CRS."""
        if self.crs is None:
            return 1.0
        if self.crs.is_geographic:
            col, row = self.width / 2, self.height / 2
            box = shapely.Polygon([self.transform * xy for xy in
                                   ((col, row), (col + 1, row), (col + 1, row + 1), (col, row + 1))])
            return abs(self._geod().geometry_area_perimeter(box)[0])
        return abs(self.transform.a * self.transform.e - self.transform.b * self.transform.d) \
            * self._metres_per_unit() ** 2

    def min_pixels(self, min_area: float | None) -> int:
        """Regions of fewer pixels than this are merged away by ``min_area`` (0: none)."""
        if not min_area:
            return 0
        if min_area < 0:
            raise RsSegError(f"--min-area must be positive, got {min_area}")
        return math.ceil(min_area / self.pixel_area())

    def check_simplify(self, tolerance: float | None, path: Path) -> None:
        check_simplify(tolerance, self.transform, path)

    def to_map(self, geoms: np.ndarray, transform) -> np.ndarray:
        """Pixel-space polygons -> map coordinates (exact affine, vertex by vertex)."""
        a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
        matrix = np.array([[a, d], [b, e]])
        return shapely.transform(geoms, lambda xy: xy @ matrix + (c, f))

    def areas(self, geoms: np.ndarray) -> list[float | None]:
        if self.crs is None:
            return [None] * len(geoms)
        if self.crs.is_geographic:
            geod = self._geod()
            return [abs(geod.geometry_area_perimeter(g)[0]) for g in geoms]
        return (shapely.area(geoms) * self._metres_per_unit() ** 2).tolist()


def ground_resolution(paths: list[Path], sample: int = 16) -> float | None:
    """Median ground sampling distance (metres per pixel) of up to ``sample`` rasters spread over
    ``paths``, from their headers; None when any lacks a CRS or cannot be read (unknown).

    Why: a model only works at the scale it learnt, and tools that resample the map to the
    model (the Deepness QGIS plugin) need that scale, which the checkpoint keeps from here."""
    paths = list(paths)
    if not paths:
        return None
    step = max(1, len(paths) // sample)
    sizes = []
    for path in paths[::step][:sample]:
        try:
            with rasterio.open(path) as src:
                meter = AreaMeter.of(src, Path(path))
                if meter.crs is None:
                    return None
                sizes.append(math.sqrt(meter.pixel_area()))
        except (rasterio.errors.RasterioError, OSError, ValueError):
            return None
    return float(np.median(sizes))
