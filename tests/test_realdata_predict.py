"""Border-corrected prediction on real GeoTIFFs from ../shared/data keeps their georeferencing."""

import numpy as np
import pytest
import rasterio

from rsseg.trained.checkpoint import load_predictor
from rsseg.infer import predict_file


@pytest.mark.realdata
@pytest.mark.parametrize(
    "relpath",
    [
        "spacenet-roads/sample_geotiff_custom_proj.tif",  # Albers CRS, 512x512, 3 bands
        "denmark-fields/RGB_small.tif",  # EPSG:32632, 452x413: not a multiple of 224
    ],
)
def test_predict_real_geotiff_keeps_crs_and_transform(shared_data, tiny_run, tmp_path, relpath):
    src_path = shared_data / relpath
    predictor = load_predictor(tiny_run.best_checkpoint)
    paths = predict_file(predictor, src_path, tmp_path)
    with rasterio.open(src_path) as src, rasterio.open(paths["classes"]) as out:
        assert out.crs == src.crs
        assert out.transform == src.transform
        assert (out.width, out.height) == (src.width, src.height)
        assert out.dtypes[0] == "uint8"
        data = out.read(1)
    assert np.isin(np.unique(data), [*range(predictor.classes.num_classes), 255]).all()
    assert paths["color"].stat().st_size > 0 and paths["blend"].stat().st_size > 0
