"""Local STAC Items and static catalogues as prediction inputs.

Bands are chosen by asset key (``B04``), by ``eo:bands`` / ``bands`` name, or by common name
(``red``); without a choice the Item must have one multi-band data asset (e.g. ``visual``).
Bands in separate files and at different resolutions (Sentinel-2's 10, 20 and 60 m) are
stacked onto one grid by a GDAL VRT written beside the outputs (``stac-inputs/ITEM.vrt``): the
finest band's pixel size over the union of the bands' extents, coarser bands resampled
bilinearly (an image, not labels; GDAL resamples as the VRT is read, so no stacked copy is
written). All bands must share one CRS. Only local files: a remote href is an error, since
nothing is downloaded at run time.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio

from rsseg.errors import RsSegError
from rsseg.io import atomic_write_text

_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
               "int32": "Int32", "uint64": "UInt64", "int64": "Int64", "float32": "Float32",
               "float64": "Float64"}


@dataclass(frozen=True)
class _Band:
    path: Path
    index: int  # 1-based band of the file
    label: str


def is_stac(path: Path) -> bool:
    """A JSON file that is a STAC Item, Catalog or Collection."""
    if Path(path).suffix.lower() != ".json" or not Path(path).is_file():
        return False
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("type") in ("Feature", "Catalog", "Collection") \
        and "stac_version" in data


def _items(path: Path) -> list:
    import pystac

    try:
        obj = pystac.read_file(str(path))
    except Exception as exc:  # noqa: BLE001 - pystac raises many kinds for a bad file
        raise RsSegError(f"{path}: not a readable STAC file: {exc}") from None
    if isinstance(obj, pystac.Item):
        return [obj]
    items = list(obj.get_items(recursive=True))
    if not items:
        raise RsSegError(f"{path}: the STAC catalogue holds no items")
    return items


def _asset_band_names(asset) -> list[list[str]]:
    """Per band of the asset, the names it answers to (eo:bands / bands: name and common name)."""
    fields = asset.extra_fields
    bands = fields.get("eo:bands") or fields.get("bands") or []
    return [[str(b[k]) for k in ("name", "common_name", "eo:common_name") if b.get(k)] for b in bands]


def _local(item, key: str, asset, source: Path) -> Path:
    href = asset.get_absolute_href() or asset.href
    if "://" in href and not href.startswith("file://"):
        raise RsSegError(f"{source}: asset '{key}' of item '{item.id}' is remote ({href}); "
                         f"rsseg reads local files only: download it and point the href at the file")
    path = Path(href.removeprefix("file://"))
    if not path.is_file():
        raise RsSegError(f"{source}: asset '{key}' of item '{item.id}' not found: {path}")
    return path


def _select(item, wanted: list[str] | None, source: Path) -> list[_Band]:
    data = {k: a for k, a in item.assets.items() if not a.roles or "data" in a.roles or "visual" in a.roles}
    if not wanted:
        multi = [(k, a) for k, a in data.items() if len(_asset_band_names(a)) > 1 or k == "visual"]
        if len(multi) != 1:
            raise RsSegError(f"{source}: item '{item.id}' has no single multi-band asset; choose bands with "
                             f"--bands (assets: {', '.join(item.assets)})")
        key, asset = multi[0]
        path = _local(item, key, asset, source)
        with rasterio.open(path) as src:
            return [_Band(path, i + 1, f"{key}:{i + 1}") for i in range(src.count)]
    chosen = []
    for name in wanted:
        match = None
        for key, asset in data.items():
            names = _asset_band_names(asset)
            if key == name and len(names) <= 1:
                match = _Band(_local(item, key, asset, source), 1, key)
            else:
                hits = [i for i, n in enumerate(names) if name in n]
                if hits:
                    match = _Band(_local(item, key, asset, source), hits[0] + 1, f"{key}:{name}")
            if match:
                break
        if match is None:
            raise RsSegError(f"{source}: item '{item.id}' has no band '{name}' (by asset key, band name or "
                             f"common name); its assets: {_describe(data)}")
        chosen.append(match)
    return chosen


def _describe(assets: dict) -> str:
    parts = []
    for key, asset in assets.items():
        names = ["/".join(n) for n in _asset_band_names(asset)]
        parts.append(f"{key} ({', '.join(names)})" if names else key)
    return ", ".join(parts)


def _vrt(bands: list[_Band], source: Path, item_id: str) -> str:
    infos = []
    for band in bands:
        with rasterio.open(band.path) as src:
            infos.append((band, src.crs, src.transform, src.width, src.height, src.dtypes[band.index - 1], src.nodata))
    crss = {str(crs) for _, crs, *_ in infos}
    if len(crss) > 1:
        raise RsSegError(f"{source}: the bands of item '{item_id}' are in different CRSs "
                         f"({', '.join(sorted(crss))}); reproject them to one first")
    for band, _, t, *_ in infos:
        if t.b or t.d or t.e > 0:
            raise RsSegError(f"{source}: band {band.label} of item '{item_id}' is rotated or south-up "
                             f"({band.path}); only north-up grids are stacked")
    crs = infos[0][1]
    res = min(abs(t.a) for _, _, t, *_ in infos)
    left = min(t.c for _, _, t, *_ in infos)
    top = max(t.f for _, _, t, *_ in infos)
    right = max(t.c + w * t.a for _, _, t, w, *_ in infos)
    bottom = min(t.f + h * t.e for _, _, t, _, h, *_ in infos)
    width, height = math.ceil(round((right - left) / res, 6)), math.ceil(round((top - bottom) / res, 6))
    dtype = np.result_type(*[d for *_, d, _ in infos]).name
    lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
             f"  <SRS>{escape(crs.to_wkt()) if crs else ''}</SRS>",
             f"  <GeoTransform>{left!r}, {res!r}, 0, {top!r}, 0, {-res!r}</GeoTransform>"]
    for n, (band, _, t, w, h, _, nodata) in enumerate(infos, start=1):
        x, y = (t.c - left) / res, (top - t.f) / res
        lines += [f'  <VRTRasterBand dataType="{_GDAL_TYPES[dtype]}" band="{n}">',
                  f"    <Description>{escape(band.label)}</Description>",
                  *([f"    <NoDataValue>{nodata!r}</NoDataValue>"] if nodata is not None else []),
                  '    <ComplexSource resampling="bilinear">',
                  f'      <SourceFilename relativeToVRT="0">{escape(str(band.path.resolve()))}</SourceFilename>',
                  f"      <SourceBand>{band.index}</SourceBand>",
                  f'      <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>',
                  f'      <DstRect xOff="{x!r}" yOff="{y!r}" xSize="{w * abs(t.a) / res!r}" '
                  f'ySize="{h * abs(t.e) / res!r}"/>',
                  *([f"      <NODATA>{nodata!r}</NODATA>"] if nodata is not None else []),
                  "    </ComplexSource>", "  </VRTRasterBand>"]
    return "\n".join(lines + ["</VRTDataset>"]) + "\n"


def _safe_name(item_id: str, seen: set[str]) -> str:
    """A file name for an Item id: no path separators or leading dots; repeats get -2, -3..."""
    base = "".join(c if c.isalnum() or c in "-_." else "_" for c in item_id).lstrip(".") or "item"
    name, k = base, 1
    while name in seen:
        k += 1
        name = f"{base}-{k}"
    seen.add(name)
    return name


def stac_inputs(path: Path, bands: list[str] | None, work_dir: Path) -> list[Path]:
    """One raster per Item of the STAC file at ``path``: ``work_dir/stac-inputs/ITEM.vrt``."""
    path = Path(path)
    out = []
    seen: set[str] = set()
    for item in _items(path):
        name = _safe_name(item.id, seen)
        vrt = Path(work_dir) / "stac-inputs" / f"{name}.vrt"
        vrt.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(vrt, _vrt(_select(item, bands, path), path, item.id))
        out.append(vrt)
    return out


def expand_inputs(inputs: list[Path], bands: list[str] | None, work_dir: Path) -> list[Path]:
    """Replace STAC files among ``inputs`` by their stacked rasters; other inputs pass through."""
    expanded = []
    for p in inputs:
        expanded += stac_inputs(p, bands, work_dir) if is_stac(Path(p)) else [Path(p)]
    if bands and not any(is_stac(Path(p)) for p in inputs):
        raise RsSegError("--bands chooses the bands of STAC inputs; none of the inputs is a STAC Item or catalogue")
    return expanded
