"""Vector labels to masks: known pixel counts, class mapping, file formats, XYZ tiles, caching, real data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image

for _module in ("pyogrio", "shapely", "pyproj"):  # optional: vector labels need them
    pytest.importorskip(_module)

import pyogrio.raw
import pyproj
import shapely
import shapely.affinity

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.data.vector import (
    load_vector,
    rasterize_vector,
    vector_masks,
    write_vector_mask,
)
from rsseg.data.xyz import (
    GridSpec,
    chip_grid,
    parse_xyz_name,
    write_georeferenced_chip,
    xyz_bounds,
    xyz_grid,
)
from rsseg.errors import RsSegError

UTM = "EPSG:32633"
X0, Y0 = 500_000.0, 5_000_000.0
GRID = GridSpec(UTM, Affine(1.0, 0, X0, 0, -1.0, Y0), 40, 50)  # 1 m pixels, 50 wide, 40 high


def px_box(c0: float, r0: float, c1: float, r1: float):
    """A rectangle given in GRID pixel coordinates (columns c0..c1, rows r0..r1)."""
    return shapely.box(X0 + c0, Y0 - r1, X0 + c1, Y0 - r0)


def write(path: Path, geoms, crs: str | None = UTM, fields: dict | None = None, **kw) -> Path:
    fields = fields or {}
    pyogrio.raw.write(
        path, shapely.to_wkb(np.asarray(geoms, dtype=object)),
        [np.asarray(v, dtype=object if isinstance(v[0], str) else None) for v in fields.values()],
        fields=list(fields), crs=crs, geometry_type=kw.pop("geometry_type", "Unknown"), **kw,
    )
    return path


def counts(mask: np.ndarray) -> dict[int, int]:
    return {int(k): int(v) for k, v in zip(*np.unique(mask, return_counts=True), strict=True)}


def test_square_gives_exact_pixel_counts(tmp_path):
    path = write(tmp_path / "sq.geojson", [px_box(5, 3, 15, 23)])
    mask = rasterize_vector(path, GRID)
    assert mask.dtype == np.uint8 and mask.shape == (40, 50)
    assert counts(mask) == {0: 2000 - 200, 1: 200}
    assert mask[3:23, 5:15].all() and mask[2, 5] == 0 and mask[3, 15] == 0
    # a quarter pixel off the grid: centres rule gives 10x20, all_touched 11x21
    path = write(tmp_path / "off.geojson", [px_box(5.25, 3.25, 15.25, 23.25)])
    assert (rasterize_vector(path, GRID) == 1).sum() == 200
    assert (rasterize_vector(path, GRID, all_touched=True) == 1).sum() == 231


def test_wgs84_polygon_onto_utm_grid(tmp_path):
    square = shapely.segmentize(px_box(5, 3, 15, 23), 1.0)  # densified: straight in UTM after the round trip
    to_ll = pyproj.Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    ll = shapely.transform(square, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])))
    assert 14.9 < ll.centroid.x < 15.1  # really in degrees
    path = write(tmp_path / "ll.geojson", [ll], crs="EPSG:4326")
    mask = rasterize_vector(path, GRID, default_class=3, background=IGNORE_INDEX)
    assert counts(mask) == {3: 200, IGNORE_INDEX: 1800}
    assert mask[3:23, 5:15].all()


def test_attribute_mapping_by_name_and_index(tmp_path):
    boxes = [px_box(0, 0, 10, 10), px_box(10, 0, 20, 10), px_box(20, 0, 30, 10), px_box(30, 0, 40, 10)]
    path = write(tmp_path / "k.gpkg", boxes, fields={"kind": ["house", "road", "tree", "house"], "code": [1, 2, 2, 255]})
    classes = ClassTable(("background", "building", "road"), ((0, 0, 0), (255, 0, 0), (90, 90, 90)))
    mapping = {"house": "building", "road": 2, "tree": "ignore"}
    mask = rasterize_vector(path, GRID, attribute="kind", mapping=mapping, classes=classes)
    assert counts(mask) == {0: 1600, 1: 200, 2: 100, IGNORE_INDEX: 100}
    assert mask[5, 35] == 1 and mask[5, 25] == IGNORE_INDEX
    # no mapping: the attribute holds class indices; mapping keys may be strings (JSON configs)
    assert counts(rasterize_vector(path, GRID, attribute="code")) == {0: 1600, 1: 100, 2: 200, 255: 100}
    assert counts(rasterize_vector(path, GRID, attribute="code", mapping={"1": 2, "2": 1, "255": 1})) == {0: 1600, 1: 300, 2: 100}
    with pytest.raises(RsSegError, match="unknown class name 'lake'"):
        rasterize_vector(path, GRID, attribute="kind", mapping={"house": "lake"}, classes=classes)
    with pytest.raises(RsSegError, match="class index 7 is outside 0..2"):
        rasterize_vector(path, GRID, attribute="kind", mapping={"house": 7}, classes=classes)


def test_unknown_values_listed_or_mapped(tmp_path):
    boxes = [px_box(0, 0, 10, 10), px_box(10, 0, 20, 10), px_box(20, 0, 30, 10)]
    path = write(tmp_path / "u.geojson", boxes, fields={"crop": ["wheat", "rye", "rye"]})
    with pytest.raises(RsSegError, match=r"u\.geojson: attribute 'crop' has values with no class: 'rye' \(2 features\)"):
        rasterize_vector(path, GRID, attribute="crop", mapping={"wheat": 1})
    opts = {"attribute": "crop", "mapping": {"wheat": 1}, "default_class": 4}
    assert counts(rasterize_vector(path, GRID, unknown="ignore", **opts)) == {0: 1700, 1: 100, 255: 200}
    assert counts(rasterize_vector(path, GRID, unknown="default", **opts)) == {0: 1700, 1: 100, 4: 200}
    assert counts(rasterize_vector(path, GRID, unknown="skip", **opts)) == {0: 1900, 1: 100}


def test_burn_order_and_buffered_points_and_lines(tmp_path):
    small, big = px_box(10, 10, 20, 20), px_box(0, 0, 30, 30)
    path = write(tmp_path / "o.geojson", [small, big], fields={"c": [2, 1]})
    assert rasterize_vector(path, GRID, attribute="c")[15, 15] == 2  # smaller on top
    assert rasterize_vector(path, GRID, attribute="c", burn_order="file")[15, 15] == 1  # later on top
    point = shapely.Point(X0 + 25, Y0 - 20)  # on a pixel corner
    line = shapely.LineString([(X0 + 5.5, Y0 - 35.5), (X0 + 44.5, Y0 - 35.5)])
    path = write(tmp_path / "pl.geojson", [point, line])
    assert counts(rasterize_vector(path, GRID))[1] == 1 + 40
    path = write(tmp_path / "pl2.geojson", [point, shapely.affinity.translate(line, yoff=-0.5)])  # on a row edge
    buffered = rasterize_vector(path, GRID, buffer_pixels=2)
    assert (buffered[10:30] == 1).sum() == 12  # pixel centres within 2 px of the point (pi * 2**2 = 12.6)
    assert (buffered[30:] == 1).sum() == 4 * 40 + 2 * 4  # 4 rows under the line, round caps (area 168.6)


def test_invalid_geometry_repaired_or_reported(tmp_path):
    bowtie = shapely.Polygon([(X0, Y0), (X0 + 20, Y0 - 20), (X0 + 20, Y0), (X0, Y0 - 20)])
    path = write(tmp_path / "bad.geojson", [px_box(30, 0, 40, 10), bowtie])
    labels = load_vector(path)
    assert labels.stats == {"features": 2, "used": 2, "repaired": 1}
    assert 180 <= (rasterize_vector(path, GRID)[:, :20] == 1).sum() <= 220  # two triangles, 200 m2
    with pytest.raises(RsSegError, match=r"bad\.geojson: 1 invalid geometries \(feature #1: Self-intersection"):
        load_vector(path, repair=False)


def test_shapefile_latin1_encoding(tmp_path):
    path = write(tmp_path / "f.shp", [px_box(0, 0, 10, 10), px_box(10, 0, 20, 10)],
                 fields={"Afgroede": ["Vårbyg", "Græs"]}, encoding="latin1")
    (tmp_path / "f.cpg").write_text("UTF-8")  # a wrong code page, as found in the wild
    with pytest.raises(RsSegError, match=r"f\.shp: cannot decode.*encoding.*latin1"):
        rasterize_vector(path, GRID, attribute="Afgroede", mapping={"Vårbyg": 1, "Græs": 2})
    mask = rasterize_vector(path, GRID, attribute="Afgroede", mapping={"Vårbyg": 1, "Græs": 2}, encoding="latin1")
    assert counts(mask) == {0: 1800, 1: 100, 2: 100}


def test_geopackage_layer_choice(tmp_path):
    path = write(tmp_path / "two.gpkg", [px_box(0, 0, 10, 10)], layer="fields")
    write(path, [px_box(0, 0, 5, 5), px_box(40, 30, 50, 40)], layer="roads", append=True)
    with pytest.raises(RsSegError, match=r"two\.gpkg has 2 layers \(fields, roads\): choose one"):
        rasterize_vector(path, GRID)
    assert (rasterize_vector(path, GRID, layer="roads") == 1).sum() == 125
    assert (rasterize_vector(path, GRID, layer=0) == 1).sum() == 100
    with pytest.raises(RsSegError, match="unknown layer 'lakes'; layers: fields, roads"):
        rasterize_vector(path, GRID, layer="lakes")
    one = write(tmp_path / "one.gpkg", [px_box(0, 0, 10, 10)], layer="fields")
    with sqlite3.connect(one) as db:  # a plain attribute table beside the one spatial layer
        db.execute("CREATE TABLE notes (a INTEGER)")
        db.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier) VALUES ('notes', 'attributes', 'notes')")
    assert (rasterize_vector(one, GRID) == 1).sum() == 100


@pytest.mark.filterwarnings("ignore:.crs. was not provided")
def test_errors_name_the_file_and_problem(tmp_path):
    with pytest.raises(RsSegError, match=r"vector labels not found: .*nope\.geojson"):
        rasterize_vector(tmp_path / "nope.geojson", GRID)
    nocrs = write(tmp_path / "nocrs.shp", [px_box(0, 0, 10, 10)], crs=None)
    with pytest.raises(RsSegError, match=r"nocrs\.shp has no CRS"):
        rasterize_vector(nocrs, GRID)
    assert (rasterize_vector(nocrs, GRID, vector_crs=UTM) == 1).sum() == 100
    metres = write(tmp_path / "m.geojson", [px_box(0, 0, 10, 10)], crs="EPSG:4326")
    with pytest.raises(RsSegError, match=r"m\.geojson: coordinates .* are not degrees.*vector_crs"):
        rasterize_vector(metres, GRID)
    with pytest.raises(RsSegError, match=r"m\.geojson: no attribute 'kind'"):
        rasterize_vector(metres, GRID, attribute="kind", vector_crs=UTM)
    with pytest.raises(RsSegError, match=r"m\.geojson: a class `mapping` needs the `attribute`"):
        rasterize_vector(metres, GRID, mapping={"a": 1}, vector_crs=UTM)
    png = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(png)
    with pytest.raises(RsSegError, match=r"plain\.png has no CRS.*xyz_pattern"):
        rasterize_vector(metres, png, vector_crs=UTM)
    outside = write(tmp_path / "far.geojson", [px_box(500, 500, 510, 510)])
    assert counts(rasterize_vector(outside, GRID)) == {0: 2000}


def test_xyz_bounds_of_known_tiles():
    half = 20037508.342789244
    assert xyz_bounds(0, 0, 0) == pytest.approx((-half, -half, half, half))
    assert xyz_bounds(1, 1, 1) == pytest.approx((0, -half, half, 0), abs=1e-6)
    assert xyz_bounds(1, 1, 1, "EPSG:4326") == pytest.approx((0.0, -85.0511287798066, 180.0, 0.0))
    # mercantile's documented example, tile 486/332/10
    assert xyz_bounds(486, 332, 10, "EPSG:4326") == pytest.approx(
        (-9.140625, 53.12040528310657, -8.7890625, 53.33087298301705), abs=1e-12)
    assert xyz_bounds(486, 332, 10) == pytest.approx(
        (-1017529.7205322663, 7005300.768279833, -978393.962050256, 7044436.526761846), abs=1e-6)
    # the 3857 and 4326 bounds agree through PROJ
    w, s, e, n = xyz_bounds(309612, 261632, 19)
    to_ll = pyproj.Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
    assert (*to_ll.transform(w, s), *to_ll.transform(e, n)) == pytest.approx(xyz_bounds(309612, 261632, 19, "EPSG:4326"))
    with pytest.raises(RsSegError, match="does not exist at zoom 1"):
        xyz_bounds(2, 0, 1)


def test_parse_xyz_names_and_chip_grid(tmp_path):
    assert parse_xyz_name("chips/OAM-1238454-1046529-21.png") == (1238454, 1046529, 21)
    assert parse_xyz_name(Path("tiles/19/309612/261632.png"), "{z}/{x}/{y}") == (309612, 261632, 19)
    assert parse_xyz_name("OAM-1-0-1.png", tms=True) == (1, 1, 1)
    with pytest.raises(RsSegError, match=r"x\.png: does not match the XYZ name pattern"):
        parse_xyz_name("x.png")
    with pytest.raises(RsSegError, match="must contain"):
        parse_xyz_name("a-1-2.png", "a-{x}-{y}")
    grid = xyz_grid(486, 332, 10, size=512)
    assert grid.crs.to_epsg() == 3857 and grid.shape == (512, 512)
    assert grid.transform.a == pytest.approx(2 * 20037508.342789244 / 1024 / 512)
    assert grid.bounds == pytest.approx(xyz_bounds(486, 332, 10))
    chip = tmp_path / "OAM-486-332-10.png"
    Image.new("RGBA", (256, 256), (10, 20, 30, 255)).save(chip)
    assert chip_grid(chip) == xyz_grid(486, 332, 10)
    tif = write_georeferenced_chip(chip, tmp_path / "chip.tif")
    assert GridSpec.from_raster(tif) == xyz_grid(486, 332, 10)
    with rasterio.open(tif) as src:
        assert src.count == 4 and src.read(3)[0, 0] == 30


def test_write_vector_mask_georeferenced_with_colours(tmp_path):
    image = tmp_path / "img.tif"
    with rasterio.open(image, "w", driver="GTiff", width=300, height=260, count=1, dtype="uint8",
                       crs=UTM, transform=Affine(2.0, 0, X0, 0, -2.0, Y0)) as dst:
        dst.write(np.zeros((1, 260, 300), np.uint8))
    path = write(tmp_path / "v.geojson", [px_box(0, 0, 40, 20)])
    classes = ClassTable(("bg", "field"), ((0, 0, 0), (0, 200, 0)))
    out = write_vector_mask(path, image, tmp_path / "out" / "mask.tif", classes=classes, background="bg")
    with rasterio.open(out) as src:
        assert src.crs == rasterio.crs.CRS.from_string(UTM) and src.transform == Affine(2.0, 0, X0, 0, -2.0, Y0)
        assert src.profile["tiled"] and src.compression.name == "deflate" and src.nodata == IGNORE_INDEX
        assert src.colormap(1)[1] == (0, 200, 0, 255)
        assert (src.read(1) == 1).sum() == 20 * 10
    assert list((tmp_path / "out").iterdir()) == [out]  # nothing left over from the atomic write


def test_vector_masks_cache_rebuilds_on_change(tmp_path):
    images = []
    for name in ("a", "b"):
        images.append(tmp_path / f"{name}.tif")
        with rasterio.open(images[-1], "w", driver="GTiff", width=50, height=40, count=1, dtype="uint8",
                           crs=UTM, transform=GRID.transform) as dst:
            dst.write(np.zeros((1, 40, 50), np.uint8))
    vec = write(tmp_path / "v.gpkg", [px_box(0, 0, 10, 10)])
    cache = tmp_path / "cache"
    first = vector_masks(images, vec, cache)
    stamps = [p.stat().st_mtime_ns for p in first]
    assert vector_masks(images, vec, cache) == first
    assert [p.stat().st_mtime_ns for p in first] == stamps  # not rebuilt
    vec.unlink()
    write(vec, [px_box(0, 0, 20, 10)])
    second = vector_masks(images, vec, cache)
    assert second != first and not any(p.exists() for p in first)
    with rasterio.open(second[0]) as src:
        assert (src.read(1) == 1).sum() == 200
    third = vector_masks(images, vec, cache, default_class=2)
    assert third != second and sorted(cache.iterdir()) == sorted(third)
    with rasterio.open(images[0], "r+") as dst:  # the image moves by 5 pixels: its mask changes
        dst.transform = Affine(1.0, 0, X0 + 5, 0, -1.0, Y0)
    fourth = vector_masks(images, vec, cache, default_class=2)
    assert fourth[0] != third[0] and fourth[1] == third[1]
    with rasterio.open(fourth[0]) as src:
        assert (src.read(1) == 2).sum() == 150


# --- real data (../shared/data) ---------------------------------------------------------------


@pytest.mark.realdata
def test_kampala_buildings_land_on_chips(shared_data):
    root = shared_data / "kampala-buildings"
    labels = load_vector(root / "labels.geojson")
    assert labels.stats["features"] == 206 and labels.stats["repaired"] == 1
    chips = sorted((root / "chips").glob("OAM-*.png"))
    assert len(chips) == 147
    share: dict[int, list[float]] = {}
    for chip in chips:
        mask = labels.rasterize(chip, xyz_pattern="OAM-{x}-{y}-{z}")
        assert mask.shape == (256, 256)
        share.setdefault(parse_xyz_name(chip)[2], []).append(float((mask == 1).mean()))
    every = np.concatenate([np.asarray(v) for v in share.values()])
    assert (every > 0).sum() >= 130  # measured: 138 of 147 chips hold buildings
    assert 0.2 < every.mean() < 0.4  # measured: 29.2 % of chip pixels are buildings
    # zooms 19, 20, 21 cover the same ground: one share at every zoom only if the tile maths is right
    by_zoom = [np.mean(v) for v in share.values()]
    assert max(by_zoom) - min(by_zoom) < 0.005


@pytest.mark.realdata
def test_denmark_fields_crop_codes(shared_data):
    root = shared_data / "denmark-fields"
    shp, image = root / "marker2016_small.shp", root / "RGB_small.tif"
    with pytest.raises(RsSegError, match=r"'AfgKode' has values with no class: 260 \(49 features\)"):
        rasterize_vector(shp, image, attribute="AfgKode", mapping={1: 1}, encoding="latin1")
    classes = ["other", "spring barley", "winter wheat", "maize", "grass"]
    mask = rasterize_vector(
        shp, image, attribute="AfgKode", mapping={1: "spring barley", 11: "winter wheat", 216: "maize", 260: "grass"},
        classes=classes, unknown="default", default_class="other", background="ignore", encoding="latin1",
    )
    assert mask.shape == (413, 452) and set(counts(mask)) == {0, 1, 2, 3, 4, IGNORE_INDEX}
    barley = load_vector(shp, attribute="Afgroede", mapping={"Vårbyg": 1}, unknown="skip", encoding="latin1")
    area_px = shapely.area(barley.geometries).sum() / 100  # 10 m pixels
    assert (mask == 1).sum() == pytest.approx(area_px, rel=0.01)


@pytest.mark.realdata
def test_landsat8_polygons_and_points(shared_data):
    root = shared_data / "landsat8-scene"
    stem = root / "LC08_L1TP_224078_20200518_20200518_01_RT"
    classes = ["water", "crop", "tree", "developed"]
    mask = rasterize_vector(Path(f"{stem}_polygons.gpkg"), Path(f"{stem}.TIF"), attribute="name",
                            classes=classes, background="ignore", layer="land_cover")
    found = counts(mask)
    assert set(found) == {0, 1, 2, 3, IGNORE_INDEX} and found[IGNORE_INDEX] > 0.99 * mask.size
    points = rasterize_vector(Path(f"{stem}_points.gpkg"), Path(f"{stem}.TIF"), attribute="name",
                              classes=classes, background="ignore", buffer_pixels=2)
    assert sum(v for k, v in counts(points).items() if k != IGNORE_INDEX) in range(6 * 9, 6 * 15)


@pytest.mark.realdata
def test_spacenet_partial_labels(shared_data):
    root = shared_data / "spacenet-roads"
    roads = rasterize_vector(root / "sample_roads_for_masking.geojson", root / "road_mask_input.tif",
                             buffer_pixels=7) == 1
    with rasterio.open(root / "sample_road_raster_mask.tif") as src:
        reference = src.read(1) > 0
    assert (roads & reference).sum() / (roads | reference).sum() > 0.85  # measured IoU 0.92 (6 px: 0.85)
    image = root / "sample_geotiff_custom_proj.tif"
    with pytest.raises(RsSegError, match="not degrees"):  # the GeoJSON holds Albers metres, not 4326
        rasterize_vector(root / "geotiff_custom_proj_labels.geojson", image)
    pivots = rasterize_vector(root / "geotiff_custom_proj_labels.geojson", image, background="ignore",
                              vector_crs=GridSpec.from_raster(image).crs.to_wkt())
    columns = np.flatnonzero((pivots == 1).any(axis=0))
    assert (pivots == 1).sum() > 5000 and columns.min() > 512 * 0.6  # only the eastern third is labelled
