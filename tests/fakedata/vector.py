"""Fake vector-labelled data (needs pyogrio and shapely).

``make``: three georeferenced GeoTIFFs (EPSG:32633, 1 m pixels) and ``labels.gpkg`` whose
pixel-aligned rectangles carry a ``kind`` attribute (house, pond, shed); ``EXPECTED`` gives each
image's exact class pixel counts under ``MAPPING``. ``make_xyz``: web-map chips
``chips/OAM-{x}-{y}-{z}.png`` for three z19 tiles and their four z20 children, and
``labels.geojson`` (EPSG:4326) covering the western half of each z19 tile.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from fakedata._io import image, write_png

CLASSES = ["background", "house", "pond"]
MAPPING = {"house": "house", "pond": "pond", "shed": "ignore"}
X0, Y0, H, W = 500_000.0, 5_000_000.0, 40, 48
#: per image: (kind, col0, row0, col1, row1) rectangles in its own pixel coordinates
FEATURES = {
    "a": [("house", 2, 3, 12, 9), ("pond", 20, 20, 40, 36)],
    "b": [("house", 0, 0, 8, 8), ("house", 30, 10, 46, 14), ("shed", 10, 30, 14, 34)],
    "c": [("pond", 5, 5, 45, 35), ("house", 10, 10, 20, 20)],  # the house lies on the pond (smaller on top)
}
EXPECTED = {  # image -> {class index or 255: pixels}
    "a": {1: 60, 2: 320, 0: H * W - 380},
    "b": {1: 64 + 64, 255: 16, 0: H * W - 144},
    "c": {2: 1200 - 100, 1: 100, 0: H * W - 1200},
}
ZOOM19 = [(309612, 261632), (309613, 261632), (309612, 261633)]
CHIP = 32


def _origin(k: int) -> tuple[float, float]:
    return X0 + 100.0 * k, Y0


def make(root: Path) -> Path:
    import pyogrio.raw
    import shapely

    root = Path(root)
    (root / "img").mkdir(parents=True, exist_ok=True)
    geoms, kinds = [], []
    for k, (name, features) in enumerate(FEATURES.items()):
        x0, y0 = _origin(k)
        profile = {"driver": "GTiff", "height": H, "width": W, "count": 3, "dtype": "uint8",
                   "crs": "EPSG:32633", "transform": Affine(1.0, 0, x0, 0, -1.0, y0)}
        with rasterio.open(root / "img" / f"{name}.tif", "w", **profile) as dst:
            dst.write(image(k, H, W))
        for kind, c0, r0, c1, r1 in features:
            geoms.append(shapely.box(x0 + c0, y0 - r1, x0 + c1, y0 - r0))
            kinds.append(kind)
    pyogrio.raw.write(root / "labels.gpkg", shapely.to_wkb(np.asarray(geoms, dtype=object)),
                      [np.asarray(kinds, dtype=object)], fields=["kind"], crs="EPSG:32633",
                      geometry_type="Polygon", layer="parcels")
    return root


def make_xyz(root: Path) -> Path:
    import pyogrio.raw
    import shapely

    from rsseg.data.xyz import xyz_bounds

    root = Path(root)
    geoms = []
    for k, (x, y) in enumerate(ZOOM19):
        tiles = [(x, y, 19)] + [(2 * x + dx, 2 * y + dy, 20) for dy in (0, 1) for dx in (0, 1)]
        for j, (tx, ty, tz) in enumerate(tiles):
            write_png(root / "chips" / f"OAM-{tx}-{ty}-{tz}.png", np.moveaxis(image(10 * k + j, CHIP, CHIP), 0, -1))
        west, south, east, north = xyz_bounds(x, y, 19, "EPSG:4326")
        geoms.append(shapely.box(west, south, (west + east) / 2, north))
    pyogrio.raw.write(root / "labels.geojson", shapely.to_wkb(np.asarray(geoms, dtype=object)), [],
                      fields=[], crs="EPSG:4326", geometry_type="Polygon", driver="GeoJSON")
    return root
