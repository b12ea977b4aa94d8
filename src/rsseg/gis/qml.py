"""QGIS layer styles (``.qml`` sidecars): a map opens in QGIS already styled.

QGIS loads ``NAME.qml`` beside ``NAME.tif`` (or ``NAME.gpkg``) as the layer's default style.
Class maps get a paletted renderer (each class's name and colour; nodata transparent), the
confidence map a red-yellow-green ramp over its uint8 scale (254 = 1), polygons a categorised
fill by ``class_id``. Written atomically.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

from rsseg.io import atomic_write_text

_HEADER = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n<qgis version=\"3.28.0\" " \
          "styleCategories=\"AllStyleCategories\">\n"
#: confidence ramp: (stored value, colour, label); 254 = probability 1
CONFIDENCE_RAMP = ((0, "#d7191c", "0.0"), (127, "#ffffbf", "0.5"), (254, "#1a9641", "1.0"))


def _hex(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _raster(renderer: str) -> str:
    return (_HEADER + "  <pipe>\n" + renderer
            + "    <brightnesscontrast brightness=\"0\" contrast=\"0\" gamma=\"1\"/>\n"
            + "    <huesaturation saturation=\"0\" grayscaleMode=\"0\" colorizeOn=\"0\"/>\n"
            + "    <rasterresampler maxOversampling=\"2\"/>\n  </pipe>\n  <blendMode>0</blendMode>\n</qgis>\n")


def class_map_style(names, colors) -> str:
    entries = "".join(f"        <paletteEntry value=\"{i}\" color=\"{_hex(c)}\" label={quoteattr(str(n))} "
                      f"alpha=\"255\"/>\n" for i, (n, c) in enumerate(zip(names, colors)))
    return _raster("    <rasterrenderer type=\"paletted\" band=\"1\" opacity=\"1\" alphaBand=\"-1\" "
                   "nodataColor=\"\">\n      <rasterTransparency/>\n      <colorPalette>\n" + entries
                   + "      </colorPalette>\n    </rasterrenderer>\n")


def confidence_style(label: str = "confidence") -> str:
    items = "".join(f"          <item value=\"{v}\" color=\"{c}\" label=\"{t}\" alpha=\"255\"/>\n"
                    for v, c, t in CONFIDENCE_RAMP)
    lo, hi = CONFIDENCE_RAMP[0][0], CONFIDENCE_RAMP[-1][0]
    return _raster(
        f"    <rasterrenderer type=\"singlebandpseudocolor\" band=\"1\" opacity=\"1\" alphaBand=\"-1\" "
        f"classificationMin=\"{lo}\" classificationMax=\"{hi}\" nodataColor=\"\">\n"
        f"      <rasterTransparency/>\n      <rastershader>\n"
        f"        <colorrampshader colorRampType=\"INTERPOLATED\" classificationMode=\"1\" clip=\"0\" "
        f"minimumValue=\"{lo}\" maximumValue=\"{hi}\" label={quoteattr(label)}>\n{items}"
        f"        </colorrampshader>\n      </rastershader>\n    </rasterrenderer>\n")


def polygon_style(names, colors) -> str:
    cats = "".join(f"      <category value=\"{i}\" label={quoteattr(str(n))} symbol=\"{i}\" render=\"true\"/>\n"
                   for i, n in enumerate(names))
    symbols = "".join(
        f"      <symbol type=\"fill\" name=\"{i}\" alpha=\"0.8\" clip_to_extent=\"1\" force_rhr=\"0\">\n"
        f"        <layer class=\"SimpleFill\" enabled=\"1\" locked=\"0\" pass=\"0\">\n"
        f"          <Option type=\"Map\">\n"
        f"            <Option name=\"color\" type=\"QString\" value=\"{c[0]},{c[1]},{c[2]},255\"/>\n"
        f"            <Option name=\"outline_color\" type=\"QString\" value=\"35,35,35,255\"/>\n"
        f"            <Option name=\"outline_width\" type=\"QString\" value=\"0.1\"/>\n"
        f"            <Option name=\"style\" type=\"QString\" value=\"solid\"/>\n"
        f"          </Option>\n        </layer>\n      </symbol>\n" for i, c in enumerate(colors))
    return (_HEADER + "  <renderer-v2 type=\"categorizedSymbol\" attr=\"class_id\" enableorderby=\"0\" "
            "forceraster=\"0\" symbollevels=\"0\">\n    <categories>\n" + cats + "    </categories>\n"
            "    <symbols>\n" + symbols + "    </symbols>\n  </renderer-v2>\n  <blendMode>0</blendMode>\n</qgis>\n")


def write_style(data_path: Path, style: str) -> Path:
    """Write ``style`` as the sidecar QGIS loads for ``data_path`` (same name, ``.qml``)."""
    path = Path(data_path).with_suffix(".qml")
    atomic_write_text(path, style)
    return path
