"""GIS outputs of a predicted scene, made from its finished rasters: Cloud-Optimized GeoTIFFs,
QGIS styles, polygons and a STAC Item (``rsseg.gis``).

Why after the stream: a COG's overviews and tile index precede its full-resolution tiles, so
the streamed GeoTIFFs are copied once through GDAL's COG driver when complete, each replaced
atomically (checked to read back whole first); polygons are vectorised from the finished class
map, with the confidence raster for their mean confidence.

Memory contract: one raster copy at a time (GDAL streams it by blocks); vectorising reads
the class map in strips (``rsseg.gis.vectorize``).
"""

from __future__ import annotations

from pathlib import Path

import rasterio

from rsseg.gis.cog import copy_as_cog
from rsseg.gis.stac import scene_datetime, write_prediction_item
from rsseg.gis.vectorize import VectorizeOptions, default_vector_path, vectorize_map
from rsseg.io import atomic_path, check_raster

#: raster output -> overview resampling of its COG
COG_RESAMPLING = {"classes": "mode", "probabilities": "average", "confidence": "average",
                  "disagreement": "average"}


def gis_paths(paths: dict[str, Path], options) -> dict[str, Path]:
    """The extra files ``finish_gis`` writes for ``options`` (for ``--skip-existing`` too).
    The rasters' QGIS styles are the stream's (``rsseg.infer.confidence.write_styles``)."""
    extra = {}
    if options.vector:
        extra["polygons"] = default_vector_path(paths["classes"], options.vector)
        extra["polygons_qml"] = extra["polygons"].with_suffix(".qml")
    if options.stac:
        stem = paths["classes"].name.removesuffix("_classes.tif")
        extra["item"] = paths["classes"].with_name(f"{stem}_item.json")
    return extra


def _as_cog(path: Path, resampling: str) -> None:
    with rasterio.open(path) as src:
        shape = (src.count, src.height, src.width)
    with atomic_path(path, verify=lambda tmp: check_raster(tmp, shape)) as tmp:
        tmp.unlink(missing_ok=True)  # GDAL's COG driver creates the file itself
        copy_as_cog(path, tmp, resampling=resampling)


def finish_gis(paths: dict[str, Path], predictor, options, input_path: Path) -> dict[str, Path]:
    """Write the GIS outputs of one scene whose streamed outputs (``paths``, with the ones
    ``gis_paths`` adds) are complete."""
    if options.cog:
        for key, resampling in COG_RESAMPLING.items():
            if key in paths:
                _as_cog(paths[key], resampling)
    extra = gis_paths(paths, options)
    classes = predictor.classes
    if "polygons" in paths:
        vopts = VectorizeOptions(format=options.vector, simplify=options.simplify, min_area=options.min_area,
                                 # this run's own rasters, never an older run's left in the folder
                                 confidence=paths.get("confidence") or paths.get("probabilities") or False)
        result = vectorize_map(paths["classes"], paths["polygons"], options=vopts)
        if result.style is None:
            extra.pop("polygons_qml", None)
    if "item" in paths:
        assets = {k: v for k, v in paths.items() if k != "item" and v.exists()}
        write_prediction_item(assets, paths["item"], paths["item"].name.removesuffix("_item.json"),
                              classes=classes, properties={"rsseg:input": str(Path(input_path).resolve()),
                                                           "rsseg:mode": options.mode},
                              datetime=scene_datetime(input_path))
    return extra
