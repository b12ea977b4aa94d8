"""Each prediction's STAC Item: footprint in WGS84, projection, raster bands, classes, and assets
that resolve to the files beside it."""

import json

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.transform import from_origin

from rsseg.classes import ClassTable
from rsseg.gis.stac import write_prediction_item

CLASSES = ClassTable(names=("building", "bare land", "water"), colors=((60, 16, 152), (132, 41, 246), (0, 0, 255)))


def _tif(path, count=1, crs="EPSG:32640"):
    kwargs = {"crs": crs, "transform": from_origin(300000, 2800000, 0.5, 0.5)} if crs else {}
    with rasterio.open(path, "w", driver="GTiff", height=40, width=60, count=count, dtype="uint8", nodata=255,
                       **kwargs) as dst:
        dst.write(np.zeros((count, 40, 60), np.uint8))
    return path


def test_item_describes_the_prediction_and_its_files(tmp_path):
    outputs = {"classes": _tif(tmp_path / "s_classes.tif"), "probabilities": _tif(tmp_path / "s_probabilities.tif", 3),
               "areas": tmp_path / "s_areas.json", "classes_qml": tmp_path / "s_classes.qml"}
    outputs["areas"].write_text("{}")
    outputs["classes_qml"].write_text("<qgis/>")
    path = write_prediction_item(outputs, tmp_path / "s_item.json", "s", classes=CLASSES,
                                 properties={"rsseg:checkpoint": "best.ckpt"})
    item = pystac.Item.from_file(str(path))
    assert item.id == "s" and item.properties["rsseg:checkpoint"] == "best.ckpt"
    assert item.properties["proj:code"] == "EPSG:32640" and item.properties["proj:shape"] == [40, 60]
    assert item.properties["proj:transform"] == [0.5, 0.0, 300000.0, 0.0, -0.5, 2800000.0]
    west, south, east, north = item.bbox
    assert 54.9 < west < east < 55.1 and 25.2 < south < north < 25.4  # UTM 40N, near Dubai
    for key, asset in item.assets.items():
        assert (tmp_path / asset.href).exists(), key
    assert item.assets["classes_qml"].roles == ["style", "metadata"]
    bands = item.assets["probabilities"].extra_fields["raster:bands"]
    assert len(bands) == 3 and bands[0]["data_type"] == "uint8" and bands[0]["nodata"] == 255
    classes = item.assets["classes"].extra_fields["classification:classes"]
    assert [(c["value"], c["name"], c["color_hint"]) for c in classes] == [
        (0, "building", "3C1098"), (1, "bare_land", "8429F6"), (2, "water", "0000FF")]
    assert any("projection" in e for e in item.stac_extensions) and any("raster" in e for e in item.stac_extensions)


def test_a_map_without_crs_has_no_footprint_and_says_so(tmp_path):
    path = write_prediction_item({"classes": _tif(tmp_path / "n_classes.tif", crs=None)}, tmp_path / "n.json", "n")
    data = json.loads(path.read_text())
    assert data["geometry"] is None and "no CRS" in data["properties"]["rsseg:note"]
    assert data["properties"]["proj:shape"] == [40, 60]
