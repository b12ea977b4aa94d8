"""Cloud-Optimized GeoTIFFs: GDAL's COG layout (tiled, internal overviews, IFDs and ghost header
first) made from a finished GeoTIFF, so a map can be streamed by HTTP range requests and opens at
once at any zoom.

The streamed writers cannot write a COG directly (a COG's overviews and tile index come before
the full-resolution tiles), so a finished temporary GeoTIFF is copied once through GDAL's COG
driver: colour table, nodata, band descriptions, scales and tags are carried over. Overviews are
built by ``resampling`` (``mode`` for class maps, ``average`` for probabilities and confidence),
down to 256 px; nodata pixels are left out.
"""

from __future__ import annotations

from pathlib import Path

import rasterio
import rasterio.shutil

from rsseg.errors import RsSegError

BLOCK = 256


def copy_as_cog(src: Path, dst: Path, *, resampling: str, level: int = 3) -> Path:
    """Write ``dst`` (a new path; the caller renames it) as a COG copy of the GeoTIFF ``src``."""
    try:
        with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
            rasterio.shutil.copy(str(src), str(dst), driver="COG", BLOCKSIZE=BLOCK, COMPRESS="DEFLATE",
                                 LEVEL=level, OVERVIEW_RESAMPLING=resampling.upper(), BIGTIFF="IF_SAFER",
                                 OVERVIEWS="AUTO")
    except (rasterio.errors.RasterioError, OSError) as exc:
        raise RsSegError(f"cannot write {dst} as a Cloud-Optimized GeoTIFF: {exc}") from exc
    return Path(dst)
