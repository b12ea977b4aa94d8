"""GIS outputs of predict on real scenes (landsat8, deepglobe, a Dubai tile): valid COGs, polygons
that rasterise back to the class map, QGIS styles and a STAC Item whose assets exist."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.features import rasterize
from rio_cogeo.cogeo import cog_validate

from rsseg.trained.checkpoint import load_predictor
from rsseg.infer import predict_file

SCENES = {
    "landsat8": "landsat8-scene/LC08_L1TP_224078_20200518_20200518_01_RT.TIF",  # UTM, uint16, 1860 x 2041
    "deepglobe": "deepglobe-unlabelled/{first}",  # JPEG, no CRS, 2448 x 2448
    "dubai": "dubai-aerial/Tile 1/images/image_part_001.jpg",  # JPEG, no CRS
}


def _scene(shared_data, name):
    rel = SCENES[name]
    if "{first}" in rel:
        rel = rel.format(first=sorted(p.name for p in (shared_data / "deepglobe-unlabelled").glob("*.jpg"))[0])
    return shared_data / rel


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(SCENES))
def test_predict_writes_cogs_polygons_styles_and_a_stac_item(shared_data, trained, tmp_path, name):
    scene = _scene(shared_data, name)
    predictor = load_predictor(trained)
    paths = predict_file(predictor, scene, tmp_path, mode="fast", confidence="max", vector="gpkg",
                         probabilities=name == "landsat8")
    for key in ("classes", "confidence", *(["probabilities"] if name == "landsat8" else [])):
        valid, errors, _ = cog_validate(str(paths[key]), quiet=True)
        assert valid, (key, errors)
    with rasterio.open(paths["classes"]) as src:
        classes, transform, crs = src.read(1), src.transform, src.crs
        assert src.colormap(1)[0][:3] == tuple(predictor.classes.colors[0])
    polygons = gpd.read_file(paths["polygons"])
    back = rasterize(zip(polygons.geometry, polygons.class_id), out_shape=classes.shape, transform=transform,
                     fill=255, dtype="uint8")
    np.testing.assert_array_equal(back, classes)  # no gaps, no overlaps, exactly the map
    assert polygons.mean_confidence.between(0, 1).all()
    if crs is not None:
        assert polygons.area_m2.sum() == pytest.approx(polygons.area.sum() * crs.linear_units_factor[1] ** 2)
    styles = [paths["classes_qml"], paths["confidence_qml"], paths["polygons_qml"]]
    for style in styles:
        ET.parse(style)  # well-formed
    item = json.loads(paths["item"].read_text())
    for key, asset in item["assets"].items():
        assert (tmp_path / asset["href"]).exists(), key
    assert item["assets"]["classes"]["type"].endswith("profile=cloud-optimized")
    assert (item["geometry"] is None) == (crs is None)
