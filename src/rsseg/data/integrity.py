"""Truncated files the scene index would not notice: GDAL decodes a cut-off PNG as zeros.

The one check shared by the scene index (training) and ``rsseg data check``. PNG: Pillow
verifies every chunk and its CRC up to IEND (no pixel decoding, cheap); only a failing file is
inflated to count the rows it holds. GIF/BMP/WebP: a full Pillow decode. GeoTIFF: GDAL fails on
a missing strip or tile when it reads it, but the index reads images decimated (from the
overviews, where a COG keeps them before the full-resolution data), so the block offsets are
compared with the file size (no pixel read). JPEG: GDAL fails on it by itself.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

from rasterio.enums import Interleaving

from rsseg.data.rasters import WHOLE_FILE_DRIVERS, RasterInfo, open_raster
from rsseg.errors import RsSegError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel


def verify_decode(path: Path, info: RasterInfo) -> None:
    """Raise ``RsSegError`` ("<file>: truncated image (decodes N of M rows)") for a cut-off file."""
    if info.driver == "GTiff":
        missing, total = tiff_blocks_past_end(Path(path))
        if missing:
            raise RsSegError(f"{path}: truncated image ({missing} of {total} strips/tiles lie past its end)")
    if info.driver not in WHOLE_FILE_DRIVERS or info.driver == "JPEG":
        return
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                image.verify() if info.driver == "PNG" else image.load()
        except (UnidentifiedImageError, Image.DecompressionBombError):
            return  # a file Pillow does not know (or refuses to open): GDAL's reading stands
        except (OSError, SyntaxError, ValueError, struct.error) as exc:
            rows = png_rows(Path(path)) if info.driver == "PNG" else None
            if rows is not None and rows < info.height:
                raise RsSegError(f"{path}: truncated image (decodes {rows} of {info.height} rows)") from None
            raise RsSegError(f"{path}: truncated or corrupt image ({exc})") from None


def tiff_blocks_past_end(path: Path) -> tuple[int, int]:
    """(strips/tiles whose data would end past the end of the file, strips/tiles) from the TIFF tags."""
    size = Path(path).stat().st_size
    missing = total = 0
    with open_raster(path) as src:
        bands = range(1, src.count + 1) if src.interleaving == Interleaving.band else [1]
        rows, cols = src.block_shapes[0]
        for bidx in bands:
            for i in range(-(-src.height // rows)):
                for j in range(-(-src.width // cols)):
                    offset = src.get_tag_item(f"BLOCK_OFFSET_{j}_{i}", "TIFF", bidx=bidx)
                    length = src.get_tag_item(f"BLOCK_SIZE_{j}_{i}", "TIFF", bidx=bidx)
                    total += 1
                    if offset and length and int(offset) + int(length) > size:  # 0: a sparse block
                        missing += 1
    return missing, total


def png_rows(path: Path) -> int | None:
    """Complete rows held by a non-interlaced PNG's image data (None when not countable)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if not data.startswith(PNG_SIGNATURE) or len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width, _, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if interlace or colour not in PNG_CHANNELS:
        return None
    row_bytes = 1 + -(-width * PNG_CHANNELS[colour] * depth // 8)  # filter byte + samples
    inflate, pos, size = zlib.decompressobj(), 8, 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            try:
                size += len(inflate.decompress(data[pos + 8 : pos + 8 + length]))
            except zlib.error:
                break
        elif kind == b"IEND":
            break
        pos += 12 + length
    return size // row_bytes
