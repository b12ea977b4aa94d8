"""Class maps -> polygons: exact round trip, regions joined across strips, coverage kept by
simplification, specks merged, areas in m² for every kind of CRS, and errors that name the file."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.transform import from_origin
from typer.testing import CliRunner

from rsseg.cli import app
from rsseg.gis import VECTOR_FORMATS, VectorizeOptions, vectorize_map

NODATA = 255


def _write(path, classes, *, crs="EPSG:32633", transform=None, names=("a", "b", "c", "d"), nodata=NODATA):
    transform = transform or from_origin(500000, 6000000, 0.5, 0.5)
    with rasterio.open(path, "w", driver="GTiff", height=classes.shape[0], width=classes.shape[1], count=1,
                       dtype=classes.dtype, nodata=nodata, crs=crs, transform=transform) as dst:
        dst.write(classes, 1)
        if names:
            dst.update_tags(classes=json.dumps(list(names)))
    return path


def _random_map(seed=0, h=150, w=131):
    rng = np.random.default_rng(seed)
    classes = np.kron(rng.integers(0, 4, (h // 6 + 1, w // 6 + 1)), np.ones((6, 6), np.uint8))[:h, :w]
    classes = classes.astype(np.uint8)
    classes[rng.random((h, w)) < 0.03] = 2  # specks
    classes[40:47, 30:90] = NODATA
    return classes


def _read(path):
    return gpd.read_parquet(path) if path.suffix == ".parquet" else gpd.read_file(path)


def _back(frame, shape, transform):
    return rasterize(zip(frame.geometry, frame.class_id), out_shape=shape, transform=transform, fill=NODATA,
                     dtype="uint8")


@pytest.mark.parametrize("fmt", sorted(VECTOR_FORMATS))
def test_polygons_rasterise_back_to_the_class_map_exactly(tmp_path, fmt):
    classes = _random_map()
    path = _write(tmp_path / "scene_classes.tif", classes)
    result = vectorize_map(path, options=VectorizeOptions(format=fmt, strip_rows=17))
    assert result.path == tmp_path / f"scene_polygons{VECTOR_FORMATS[fmt][0]}" and result.strips == 9
    frame = _read(result.path)
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(_back(frame, classes.shape, src.transform), classes)
    assert set(frame.geom_type) == {"Polygon"} and frame.is_valid.all()
    assert frame.area.sum() == pytest.approx((classes != NODATA).sum() * 0.25)  # no overlaps, no gaps
    assert frame.area_m2.tolist() == pytest.approx(frame.area.tolist())  # UTM: metres
    assert (frame.pixels * 0.25).tolist() == pytest.approx(frame.area.tolist())
    assert list(frame.class_name) == [("a", "b", "c", "d")[c] for c in frame.class_id]
    assert frame.mean_confidence.isna().all()  # no confidence raster beside the map


def test_strips_give_the_same_polygons_as_one_pass(tmp_path):
    path = _write(tmp_path / "m.tif", _random_map(1))
    whole = _read(vectorize_map(path, tmp_path / "whole.gpkg", options=VectorizeOptions(strip_rows=10_000)).path)
    strips = _read(vectorize_map(path, tmp_path / "strips.gpkg", options=VectorizeOptions(strip_rows=5)).path)
    key = lambda f: sorted(shapely.normalize(g).wkb for g in f.geometry)  # noqa: E731
    assert len(whole) == len(strips) and key(whole) == key(strips)


def test_a_region_joined_only_strips_later_is_one_polygon_with_its_hole(tmp_path):
    classes = np.zeros((30, 30), np.uint8)
    classes[2:28, 5:8] = 1  # left arm
    classes[2:28, 20:23] = 1  # right arm, separate for 25 rows
    classes[25:28, 5:23] = 1  # joined at the bottom: a U
    classes[10:12, 12:14] = 1  # and an island of the same class inside the background
    path = _write(tmp_path / "u.tif", classes)
    frame = _read(vectorize_map(path, options=VectorizeOptions(strip_rows=4)).path)
    ones = frame[frame.class_id == 1]
    assert len(ones) == 2 and sorted(ones.pixels) == [4, 26 * 3 * 2 + 3 * 12]
    zero = frame[frame.class_id == 0]
    assert len(zero) == 1 and len(zero.geometry.iloc[0].interiors) == 2  # the U and the island are holes


def test_simplification_keeps_a_coverage(tmp_path):
    classes = _random_map(2)
    path = _write(tmp_path / "m.tif", classes)
    frame = _read(vectorize_map(path, options=VectorizeOptions(simplify=0.6, strip_rows=23)).path)
    geoms = frame.geometry.values
    valid_area = (classes != NODATA).sum() * 0.25
    union = shapely.union_all(geoms).area
    assert shapely.coverage_is_valid(geoms)  # shared edges still shared: no overlaps, no slivers
    assert union == pytest.approx(valid_area, rel=1e-3) and frame.area.sum() == pytest.approx(union, rel=1e-9)
    exact = _read(vectorize_map(path, tmp_path / "exact.gpkg").path)
    assert shapely.get_num_coordinates(geoms).sum() < shapely.get_num_coordinates(exact.geometry.values).sum()


def test_min_area_merges_specks_into_neighbours_without_holes(tmp_path):
    classes = _random_map(3)
    path = _write(tmp_path / "m.tif", classes)
    frame = _read(vectorize_map(path, options=VectorizeOptions(min_area=2.0, strip_rows=19)).path)  # 8 px
    assert frame.pixels.min() >= 8
    with rasterio.open(path) as src:
        back = _back(frame, classes.shape, src.transform)
    np.testing.assert_array_equal(back == NODATA, classes == NODATA)  # specks filled, nodata untouched
    plain = _read(vectorize_map(path, tmp_path / "plain.gpkg").path)
    assert plain.pixels.min() < 8 and len(frame) < len(plain)


def test_mean_confidence_from_the_confidence_raster_beside_the_map(tmp_path):
    classes = _random_map(4, 60, 70)
    conf = np.random.default_rng(4).integers(0, 256, classes.shape).astype(np.uint8)  # 254 = 1, 255 = no value
    path = _write(tmp_path / "s_classes.tif", classes)
    _write(tmp_path / "s_confidence.tif", conf, names=None, nodata=None)
    result = vectorize_map(path, options=VectorizeOptions(strip_rows=7))
    assert result.confidence == tmp_path / "s_confidence.tif"
    frame = _read(result.path)
    with rasterio.open(path) as src:
        transform = src.transform
    for row in frame.sample(20, random_state=0).itertuples():
        inside = rasterize([(row.geometry, 1)], out_shape=classes.shape, transform=transform, fill=0) == 1
        values = conf[inside].astype(float)
        values[values == 255] = np.nan
        assert row.mean_confidence == pytest.approx(np.nanmean(values / 254), rel=1e-5)
    none = _read(vectorize_map(path, tmp_path / "none.gpkg", options=VectorizeOptions(confidence=False)).path)
    assert none.mean_confidence.isna().all()  # False: no confidence, not the sibling file


def test_areas_on_the_ellipsoid_for_a_geographic_crs(tmp_path):
    import pyproj

    classes = np.zeros((10, 10), np.uint8)
    transform = from_origin(10.0, 60.0, 0.001, 0.001)  # degrees, at 60 °N
    frame = _read(vectorize_map(_write(tmp_path / "g.tif", classes, crs="EPSG:4326", transform=transform)).path)
    expected = abs(pyproj.Geod(ellps="WGS84").geometry_area_perimeter(shapely.box(10.0, 59.99, 10.01, 60.0))[0])
    assert frame.area_m2.iloc[0] == pytest.approx(expected, rel=1e-9)
    assert 3e5 < expected < 7e5  # about 0.56 km x 1.11 km


def test_a_map_without_crs_says_so_in_a_warning_and_in_the_file(tmp_path):
    path = tmp_path / "nocrs.tif"
    classes = _random_map(5, 40, 40)
    with rasterio.open(path, "w", driver="GTiff", height=40, width=40, count=1, dtype="uint8", nodata=NODATA) as dst:
        dst.write(classes, 1)
    result = CliRunner().invoke(app, ["vectorize", str(path)])
    assert result.exit_code == 0, result.output
    printed = result.output.replace("\n", "")  # rich wraps long lines
    assert "no CRS" in printed and str(path) in printed
    out = tmp_path / "nocrs_polygons.gpkg"
    meta = json.loads(pyogrio.read_info(out)["layer_metadata"]["rsseg"])
    assert meta["area_units"] == "pixel" and "no CRS" in meta["note"]
    assert _read(out).area_m2.isna().all()


def test_bad_input_is_one_line_naming_the_file(tmp_path):
    runner = CliRunner()
    path = _write(tmp_path / "m.tif", _random_map(6, 30, 30))
    cases = {
        ("vectorize", str(tmp_path / "missing.tif")): "missing.tif",
        ("vectorize", str(path), "--format", "shp"): "gpkg, parquet, geojson",
        ("vectorize", str(path), "--simplify", "1000"): "m.tif",
    }
    for args, needle in cases.items():
        result = runner.invoke(app, list(args))
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.output.replace("\n", ""), (args, result.output)
    probs = tmp_path / "p.tif"
    _write(probs, np.zeros((2, 5, 5), np.float32)[0], names=None)
    result = runner.invoke(app, ["vectorize", str(probs)])
    assert result.exit_code == 2 and "one-band integer class map" in result.output
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_a_qgis_style_beside_the_polygons_of_a_map_with_a_colour_table(tmp_path):
    import xml.etree.ElementTree as ET

    path = _write(tmp_path / "m_classes.tif", _random_map(7, 30, 30))
    with rasterio.open(path, "r+") as dst:
        dst.write_colormap(1, {0: (10, 20, 30), 1: (40, 50, 60), 2: (70, 80, 90), 3: (1, 2, 3)})
    result = vectorize_map(path)
    assert result.style == tmp_path / "m_polygons.qml"
    symbols = ET.parse(result.style).getroot().findall("renderer-v2/symbols/symbol")
    assert [s.find("layer/Option/Option[@name='color']").get("value") for s in symbols][:2] == [
        "10,20,30,255", "40,50,60,255"]
    assert vectorize_map(_write(tmp_path / "plain.tif", _random_map(7, 30, 30))).style is None
