"""Vector formats, one writer each, written atomically: GeoPackage (default), GeoParquet, GeoJSON.

Each file carries rsseg's metadata (source map, area units, options): GeoPackage as layer
metadata, GeoJSON as a foreign member of the collection, GeoParquet in the schema metadata.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rsseg.errors import RsSegError
from rsseg.io import atomic_path


def _frame(table: dict, geoms: np.ndarray, crs):
    import geopandas as gpd

    return gpd.GeoDataFrame(table, geometry=list(geoms), crs=crs.to_wkt() if crs else None)


def _ogr(driver: str, options: Callable[[dict], dict]):
    def write(path: Path, table: dict, geoms: np.ndarray, crs, metadata: dict) -> None:
        import pyogrio

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*crs.*was not provided")
            pyogrio.write_dataframe(_frame(table, geoms, crs), path, driver=driver, layer="polygons",
                                    geometry_type="Polygon", **options(metadata))

    return write


def _parquet(path: Path, table: dict, geoms: np.ndarray, crs, metadata: dict) -> None:
    import pyarrow.parquet as pq

    _frame(table, geoms, crs).to_parquet(path, index=False)
    data = pq.read_table(path)
    pq.write_table(data.replace_schema_metadata({**(data.schema.metadata or {}),
                                                 b"rsseg": json.dumps(metadata).encode()}), path)


#: name -> (file suffix, writer(path, table, geometries, crs, metadata))
VECTOR_FORMATS = {
    "gpkg": (".gpkg", _ogr("GPKG", lambda m: {"layer_metadata": {"rsseg": json.dumps(m)}})),
    "parquet": (".parquet", _parquet),
    "geojson": (".geojson", _ogr("GeoJSON", lambda m: {
        "layer_options": {"FOREIGN_MEMBERS_COLLECTION": json.dumps({"rsseg": m})}})),
}


def suffix_of(fmt: str) -> str:
    return _lookup(fmt)[0]


def _lookup(fmt: str):
    try:
        return VECTOR_FORMATS[fmt]
    except KeyError:
        raise RsSegError(f"unknown vector format '{fmt}'; choose one of: {', '.join(VECTOR_FORMATS)}") from None


def write_polygons(path: Path, fmt: str, table: dict, geoms: np.ndarray, crs, metadata: dict) -> Path:
    _, writer = _lookup(fmt)
    with atomic_path(Path(path)) as tmp:
        tmp.unlink()  # the OGR drivers create the file themselves
        try:
            writer(tmp, table, geoms, crs, metadata)
        except Exception as exc:  # noqa: BLE001 - any driver failure: name the file, keep the old one
            raise RsSegError(f"cannot write {path}: {exc}") from exc
    return Path(path)
