"""COG copies: valid by rio-cogeo's validator, with colour table, nodata, tags and overviews."""

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

from rsseg.gis.cog import copy_as_cog


def test_a_class_map_copy_is_a_valid_cog_with_its_colours_nodata_and_mode_overviews(tmp_path):
    rng = np.random.default_rng(0)
    classes = np.kron(rng.integers(0, 3, (40, 40)), np.ones((16, 16), np.int64)).astype(np.uint8)  # 640 px
    classes[:32, :] = 255
    src = tmp_path / "tiled.tif"
    with rasterio.open(src, "w", driver="GTiff", height=640, width=640, count=1, dtype="uint8", nodata=255,
                       crs="EPSG:32633", transform=from_origin(500000, 6000000, 1, 1), tiled=True) as dst:
        dst.write(classes, 1)
        dst.write_colormap(1, {0: (255, 0, 0, 255), 1: (0, 255, 0, 255), 2: (0, 0, 255, 255)})
        dst.update_tags(classes='["a", "b", "c"]')
    assert not cog_validate(str(src), quiet=True)[0]  # a plain tiled GeoTIFF is not one
    cog = copy_as_cog(src, tmp_path / "cog.tif", resampling="mode")
    valid, errors, _ = cog_validate(str(cog), quiet=True)
    assert valid, errors
    with rasterio.open(cog) as out:
        assert out.nodata == 255 and out.tags()["classes"] == '["a", "b", "c"]'
        assert out.colormap(1)[1] == (0, 255, 0, 255)
        np.testing.assert_array_equal(out.read(1), classes)
        assert out.overviews(1) == [2, 4]  # down to below one 256 px block
        half = out.read(1, out_shape=(320, 320))
    assert (half[:16] == 255).all() and set(np.unique(half[16:])) <= {0, 1, 2}
    blocks = classes[32:].reshape(304, 2, 320, 2)[:, 0, :, 0]  # each 16 px square is one class
    np.testing.assert_array_equal(half[16:], blocks)
