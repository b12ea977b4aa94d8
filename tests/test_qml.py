"""QGIS style sidecars: well-formed XML that names every class with its colour, a confidence
ramp over the stored scale, and a categorised polygon style; written beside the data file."""

import xml.etree.ElementTree as ET

from rsseg.gis.qml import CONFIDENCE_RAMP, class_map_style, confidence_style, polygon_style, write_style

NAMES = ["building", "land & sand", 'road "A"']
COLORS = [(60, 16, 152), (132, 41, 246), (110, 193, 228)]


def test_class_map_style_is_a_palette_of_every_class(tmp_path):
    path = write_style(tmp_path / "scene_classes.tif", class_map_style(NAMES, COLORS))
    assert path == tmp_path / "scene_classes.qml"
    root = ET.parse(path).getroot()
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = renderer.findall("colorPalette/paletteEntry")
    assert [(e.get("value"), e.get("label"), e.get("color")) for e in entries] == [
        ("0", "building", "#3c1098"), ("1", "land & sand", "#8429f6"), ("2", 'road "A"', "#6ec1e4")]


def test_confidence_style_ramps_over_the_uint8_scale():
    root = ET.fromstring(confidence_style().split("\n", 1)[1])
    shader = root.find("pipe/rasterrenderer/rastershader/colorrampshader")
    items = shader.findall("item")
    assert [int(i.get("value")) for i in items] == [v for v, _, _ in CONFIDENCE_RAMP]
    assert (shader.get("minimumValue"), shader.get("maximumValue")) == ("0", "254")


def test_polygon_style_categorises_by_class_id():
    root = ET.fromstring(polygon_style(NAMES, COLORS).split("\n", 1)[1])
    renderer = root.find("renderer-v2")
    assert renderer.get("attr") == "class_id"
    assert [c.get("label") for c in renderer.findall("categories/category")] == NAMES
    colors = [s.find("layer/Option/Option[@name='color']").get("value") for s in renderer.findall("symbols/symbol")]
    assert colors == ["60,16,152,255", "132,41,246,255", "110,193,228,255"]
