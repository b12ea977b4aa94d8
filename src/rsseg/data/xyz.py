"""Pixel grids for rasterising labels: a georeferenced raster's, or an XYZ web-map tile's.

Web-map chips (e.g. ``OAM-{x}-{y}-{z}.png``) carry no georeferencing: where they lie follows
from the tile numbers in their names (Web Mercator, EPSG:3857, XYZ/"slippy map" numbering with
y counted from the north, as OSM, Google and OpenAerialMap use; TMS flips y).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import CRSError, NotGeoreferencedWarning, RasterioIOError
from rasterio.transform import from_bounds

from rsseg.errors import RsSegError
from rsseg.io import atomic_path, raster_writer

#: Half the side of the Web Mercator square, metres (pi * WGS84 semi-major axis).
WEB_MERCATOR_HALF = math.pi * 6378137.0
#: File-name pattern of OpenAerialMap / fAIr chips such as ``OAM-1238454-1046529-21.png``.
OAM_PATTERN = "OAM-{x}-{y}-{z}"
MAX_ZOOM = 30


@dataclass(frozen=True)
class GridSpec:
    """Where a mask's pixels lie: CRS, affine pixel-to-CRS transform and (height, width)."""

    crs: CRS
    transform: Affine
    height: int
    width: int

    def __post_init__(self) -> None:
        if not isinstance(self.crs, CRS):
            try:
                object.__setattr__(self, "crs", CRS.from_user_input(self.crs))
            except CRSError as exc:
                raise RsSegError(f"grid CRS {self.crs!r} is not understood: {exc}") from None
        if self.height < 1 or self.width < 1:
            raise RsSegError(f"grid shape must be positive, got {self.height}x{self.width}")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the whole grid in its CRS (any rotation included)."""
        t = self.transform  # spelt out: affine 3 deprecates `*`, affine 2 lacks `@`
        xs = [t.a * c + t.b * r + t.c for c in (0, self.width) for r in (0, self.height)]
        ys = [t.d * c + t.e * r + t.f for c in (0, self.width) for r in (0, self.height)]
        return (min(xs), min(ys), max(xs), max(ys))

    @property
    def pixel_size(self) -> float:
        """Side of a (square-equivalent) pixel in CRS units: buffers are given in pixels."""
        return math.sqrt(abs(self.transform.determinant))

    @classmethod
    def from_raster(cls, path: Path) -> GridSpec:
        path = Path(path)
        if not path.exists():
            raise RsSegError(f"image not found: {path}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as src:
                    crs, transform, h, w = src.crs, src.transform, src.height, src.width
        except RasterioIOError as exc:
            raise RsSegError(f"{path} is not a readable image: {exc}") from None
        if crs is None:
            raise RsSegError(
                f"{path} has no CRS (not georeferenced), so vector labels cannot be placed on it; "
                f"for XYZ web-map chips give the name pattern (e.g. xyz_pattern='{OAM_PATTERN}')"
            )
        return cls(crs, transform, h, w)


def grid_of(like: Path | GridSpec, xyz_pattern: str | None = None) -> GridSpec:
    """The pixel grid of ``like``: a GridSpec as is, an XYZ chip by its name, else its georeferencing."""
    if isinstance(like, GridSpec):
        return like
    if xyz_pattern is not None:
        return chip_grid(Path(like), xyz_pattern)
    return GridSpec.from_raster(Path(like))


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[xyz]\})", pattern)
    if sorted(p for p in parts if p in ("{x}", "{y}", "{z}")) != ["{x}", "{y}", "{z}"]:
        raise RsSegError(f"XYZ name pattern {pattern!r} must contain {{x}}, {{y}} and {{z}} once each")
    body = "".join(f"(?P<{p[1]}>\\d+)" if p in ("{x}", "{y}", "{z}") else re.escape(p) for p in parts)
    return re.compile(body)


def parse_xyz_name(name: str | Path, pattern: str = OAM_PATTERN, *, tms: bool = False) -> tuple[int, int, int]:
    """``(x, y, z)`` from a chip's path, the extension dropped.

    ``pattern`` uses ``{x}``, ``{y}``, ``{z}`` placeholders and may span folders, e.g.
    ``"{z}/{x}/{y}"`` for ``tiles/19/309612/261632.png``. ``tms=True`` flips y (TMS numbering).
    """
    path = Path(name)
    depth = pattern.count("/") + 1
    parts = list(path.parts[-depth:])
    if not parts or len(parts) < depth:
        raise RsSegError(f"{name}: does not match the XYZ name pattern {pattern!r}")
    parts[-1] = Path(parts[-1]).stem
    match = _pattern_regex(pattern).fullmatch("/".join(parts))
    if match is None:
        raise RsSegError(f"{name}: does not match the XYZ name pattern {pattern!r}")
    x, y, z = (int(match[k]) for k in "xyz")
    _check_tile(x, y, z, name)
    return (x, (1 << z) - 1 - y, z) if tms else (x, y, z)


def _check_tile(x: int, y: int, z: int, where: object = "tile") -> None:
    if not 0 <= z <= MAX_ZOOM:
        raise RsSegError(f"{where}: zoom {z} is outside 0..{MAX_ZOOM}")
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise RsSegError(f"{where}: tile x={x} y={y} does not exist at zoom {z} (0..{n - 1})")


def xyz_bounds(x: int, y: int, z: int, crs: str = "EPSG:3857") -> tuple[float, float, float, float]:
    """(west, south, east, north) of XYZ tile x/y/z in metres (EPSG:3857) or degrees (EPSG:4326)."""
    _check_tile(x, y, z)
    n = 1 << z
    crs_name = str(crs).upper()
    if crs_name == "EPSG:3857":
        side = 2 * WEB_MERCATOR_HALF / n
        west = -WEB_MERCATOR_HALF + x * side
        north = WEB_MERCATOR_HALF - y * side
        return (west, north - side, west + side, north)
    if crs_name == "EPSG:4326":

        def lat(row: int) -> float:
            return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

        return (x / n * 360.0 - 180.0, lat(y + 1), (x + 1) / n * 360.0 - 180.0, lat(y))
    raise RsSegError(f"xyz_bounds gives EPSG:3857 or EPSG:4326 bounds, not {crs}")


def xyz_grid(x: int, y: int, z: int, size: int = 256) -> GridSpec:
    """The EPSG:3857 grid of a ``size`` x ``size`` chip of tile x/y/z (512 for 'retina' tiles)."""
    west, south, east, north = xyz_bounds(x, y, z)
    return GridSpec(CRS.from_epsg(3857), from_bounds(west, south, east, north, size, size), size, size)


def _chip_size(path: Path) -> tuple[int, int]:
    if not path.exists():
        raise RsSegError(f"chip not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return src.height, src.width
    except RasterioIOError as exc:
        raise RsSegError(f"{path} is not a readable image: {exc}") from None


def chip_grid(path: Path, pattern: str = OAM_PATTERN, *, tms: bool = False) -> GridSpec:
    """The grid of a web-map chip from its name and pixel size (chips must be square)."""
    path = Path(path)
    x, y, z = parse_xyz_name(path, pattern, tms=tms)
    h, w = _chip_size(path)
    if h != w:
        raise RsSegError(f"{path}: web-map chips are square, this one is {w}x{h}")
    return xyz_grid(x, y, z, size=w)


def write_raster(
    data: np.ndarray, grid: GridSpec, out_path: Path, *, nodata: float | None = None,
    colormap: np.ndarray | dict | None = None, colorinterp: Sequence[ColorInterp] | None = None,
) -> Path:
    """Write (C, H, W) or (H, W) ``data`` on ``grid`` as a deflate GeoTIFF (tiled when >= 256 px), atomically.

    ``colormap``: (256, 3) RGB lookup (or rasterio's dict) written as band 1's colour table.
    """
    data = data[None] if data.ndim == 2 else data
    profile: dict = {
        "driver": "GTiff", "dtype": data.dtype.name, "count": data.shape[0], "height": grid.height,
        "width": grid.width, "crs": grid.crs, "transform": grid.transform, "compress": "deflate",
        "nodata": nodata,
    }
    if data.shape[1:] != grid.shape:
        raise RsSegError(f"{out_path}: data is {data.shape[2]}x{data.shape[1]} but the grid {grid.width}x{grid.height}")
    if grid.height >= 256 and grid.width >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with atomic_path(Path(out_path)) as tmp, raster_writer(tmp, **profile) as dst:
        dst.write(data)
        if isinstance(colormap, dict):
            dst.write_colormap(1, colormap)
        elif colormap is not None:
            dst.write_colormap(1, {i: (*map(int, colormap[i]), 255) for i in range(256)})
        if colorinterp is not None:
            dst.colorinterp = colorinterp
    return Path(out_path)


def write_georeferenced_chip(
    chip: Path, out_path: Path, pattern: str = OAM_PATTERN, *, tms: bool = False
) -> Path:
    """Copy a chip into a GeoTIFF in EPSG:3857 so GIS tools and ``GridSpec.from_raster`` place it."""
    chip = Path(chip)
    grid = chip_grid(chip, pattern, tms=tms)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(chip) as src:
            data, interp = src.read(), src.colorinterp
            cmap = src.colormap(1) if interp[0] == ColorInterp.palette else None
    return write_raster(data, grid, out_path, colormap=cmap, colorinterp=interp)
