"""A STAC Item for each prediction: what a catalogue, a STAC browser or a GIS plugin reads.

The Item's geometry and bbox are the class map's footprint in WGS84; the projection extension
records its CRS, shape and transform, the raster extension each asset's bands (data type,
nodata, scale), the classification extension the class values, names and colours. Assets:
the class map, probabilities, confidence, polygons, QGIS styles, previews and the areas JSON,
whichever exist, by relative path (the folder can be moved). Maps without a CRS get no
geometry (STAC allows a null geometry) and a note. The datetime is the input's (its TIFF date
tag, else its file time), not the clock, so reruns write the same bytes. Written atomically as
``NAME_item.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import transform_geom

from rsseg.io import atomic_write_text

#: output role -> (media type, STAC roles, title)
ASSET_KINDS = {
    "classes": ("image/tiff; application=geotiff", ["data"], "Class map"),
    "probabilities": ("image/tiff; application=geotiff", ["data"], "Class probabilities (uint8, 254 = 1)"),
    "confidence": ("image/tiff; application=geotiff", ["data"], "Confidence (uint8, 254 = 1)"),
    "polygons": ("application/geopackage+sqlite3", ["data"], "Class polygons"),
    "disagreement": ("image/tiff; application=geotiff", ["data"], "D4 disagreement (uint8, 254 = 1)"),
    "classes_qml": ("application/xml", ["style", "metadata"], "QGIS style of the class map"),
    "confidence_qml": ("application/xml", ["style", "metadata"], "QGIS style of the confidence map"),
    "disagreement_qml": ("application/xml", ["style", "metadata"], "QGIS style of the disagreement map"),
    "polygons_qml": ("application/xml", ["style", "metadata"], "QGIS style of the polygons"),
    "color": ("image/png", ["overview"], "Colour preview"),
    "blend": ("image/png", ["overview"], "Preview over the image"),
    "areas": ("application/json", ["metadata"], "Class areas"),
}
_VECTOR_MEDIA = {".gpkg": "application/geopackage+sqlite3", ".parquet": "application/vnd.apache.parquet",
                 ".geojson": "application/geo+json"}


def _is_cog(path: Path) -> bool:
    try:
        from rio_cogeo.cogeo import cog_validate
    except ImportError:  # the validator is a dev dependency; GDAL's COG driver wrote the file
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cog_validate(str(path), quiet=True)[0]


def _raster_bands(path: Path) -> list[dict]:
    with rasterio.open(path) as src:
        return [{"data_type": src.dtypes[i], "nodata": src.nodata, "scale": src.scales[i],
                 "offset": src.offsets[i]} for i in range(src.count)]


def scene_datetime(path: Path | None) -> dt.datetime:
    """The Item's datetime: the input's TIFF date tag, else its file's modification time (UTC);
    never the clock, so a rerun writes a byte-identical Item."""
    if path is not None and Path(path).exists():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as src:
                    stamp = src.tags().get("TIFFTAG_DATETIME")
            if stamp:
                return dt.datetime.strptime(stamp.strip(), "%Y:%m:%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)
        except (rasterio.errors.RasterioError, ValueError):
            pass
        return dt.datetime.fromtimestamp(int(Path(path).stat().st_mtime), dt.timezone.utc)
    return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def prediction_item(outputs: dict[str, Path], scene_id: str, *, classes=None, properties: dict | None = None,
                    datetime: dt.datetime | None = None):
    """A pystac Item describing one prediction's ``outputs`` (role -> path); ``datetime``
    defaults to ``scene_datetime`` of the class map."""
    import pystac
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterExtension

    class_map = Path(outputs["classes"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(class_map) as src:
            crs, transform, shape, bounds = src.crs, src.transform, [src.height, src.width], src.bounds
    geometry = bbox = None
    props = {"rsseg:source": scene_id, **(properties or {})}
    if crs:
        footprint = {"type": "Polygon", "coordinates": [[(bounds.left, bounds.bottom), (bounds.right, bounds.bottom),
                     (bounds.right, bounds.top), (bounds.left, bounds.top), (bounds.left, bounds.bottom)]]}
        geometry = transform_geom(crs, "EPSG:4326", footprint)
        xs, ys = zip(*geometry["coordinates"][0])
        bbox = [min(xs), min(ys), max(xs), max(ys)]
    else:
        props["rsseg:note"] = "the map has no CRS: no footprint"
    item = pystac.Item(id=scene_id, geometry=geometry, bbox=bbox,
                       datetime=datetime or scene_datetime(class_map), properties=props)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = crs.to_epsg() if crs else None
    proj.apply(code=f"EPSG:{epsg}" if epsg else None, wkt2=None if epsg or not crs else crs.to_wkt(),
               shape=shape, transform=list(transform)[:6])
    for role, path in outputs.items():
        path = Path(path)
        media, roles, title = ASSET_KINDS.get(role, (None, ["data"], role))
        if role == "polygons":
            media = _VECTOR_MEDIA.get(path.suffix, media)
        if path.suffix == ".tif" and _is_cog(path):
            media = pystac.MediaType.COG
        asset = pystac.Asset(href=path.name, media_type=media, roles=roles, title=title)
        item.add_asset(role, asset)
        if path.suffix == ".tif":
            RasterExtension.ext(asset, add_if_missing=True).apply(
                [pystac.extensions.raster.RasterBand.create(**b) for b in _raster_bands(path)])
    if classes is not None:
        _classification(item, classes)
    return item


def _classification(item, classes) -> None:
    from pystac.extensions.classification import Classification, ClassificationExtension

    entries = [Classification.create(value=i, name=_stac_name(n), description=n,
                                     color_hint="{:02X}{:02X}{:02X}".format(*c))
               for i, (n, c) in enumerate(zip(classes.names, classes.colors))]
    ClassificationExtension.ext(item.assets["classes"], add_if_missing=True).apply(classes=entries)


def _stac_name(name: str) -> str:
    """Classification names match ``^[0-9A-Za-z-_]+$``."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "class"


def write_prediction_item(outputs: dict[str, Path], path: Path, scene_id: str, *, classes=None,
                          properties: dict | None = None, datetime: dt.datetime | None = None) -> Path:
    """Write the Item as JSON at ``path`` (atomically; asset hrefs relative to its folder)."""
    item = prediction_item(outputs, scene_id, classes=classes, properties=properties, datetime=datetime)
    atomic_write_text(Path(path), json.dumps(item.to_dict(include_self_link=False), indent=1) + "\n")
    return Path(path)
