"""Streamed prediction to files: GeoTIFF/PNG/JSON outputs, georeferencing, bands, areas."""

import json
import logging

import numpy as np
import pytest
import rasterio
from infer_helpers import (
    UTM_TRANSFORM,
    K,
    make_predictor,
    random_image,
    reference_stitch,
    write_geotiff,
)
from PIL import Image
from rasterio.crs import CRS
from rasterio.transform import Affine

from rsseg.infer import predict_file, predict_files


def test_geotiff_outputs_keep_crs_transform_and_nodata(tmp_path):
    image = random_image(90, 260, dtype=np.uint16) * 4 + 1  # no zeros except the nodata block
    image[:, 10:20, 30:50] = 0
    src = write_geotiff(tmp_path / "scene.tif", image, nodata=0)
    predictor = make_predictor(mean=(400.0, 440.0, 480.0), std=(200.0,) * 3)
    out_dir = tmp_path / "out" / "nested"
    paths = predict_file(predictor, src, out_dir)
    assert set(paths) == {"classes", "color", "blend", "areas", "classes_qml", "item"}
    with rasterio.open(paths["classes"]) as ds:
        assert ds.crs == CRS.from_epsg(32633) and ds.transform == UTM_TRANSFORM
        assert ds.nodata == 255 and ds.count == 1 and ds.dtypes[0] == "uint8"
        assert ds.profile["tiled"] and ds.block_shapes[0] == (256, 256)
        assert ds.profile["compress"].lower() == "deflate"
        assert ds.colormap(1)[1] == (0, 255, 0, 255) and ds.colormap(1)[3] == (255, 255, 0, 255)
        assert ds.tags()["rsseg_mode"] == "reference" and ds.tags()["input_nodata"] == "0.0"
        classes = ds.read(1)
    assert (classes[10:20, 30:50] == 255).all()
    assert (classes != 255).sum() == 90 * 260 - 200 and classes[classes != 255].max() < K
    areas = json.loads(paths["areas"].read_text())
    assert areas["nodata_pixels"] == 200 and areas["valid_pixels"] == 90 * 260 - 200
    assert sum(c["pixels"] for c in areas["classes"]) == areas["valid_pixels"]
    for key in ("color", "blend"):
        with Image.open(paths[key]) as im:
            assert im.size == (260, 90)
    # atomic writes: only the outputs, no temporary files
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(p.name for p in paths.values())


def test_area_km2_projected_and_geographic(tmp_path):
    predictor = make_predictor()
    image = random_image(60, 80)
    utm = predict_file(predictor, write_geotiff(tmp_path / "utm.tif", image), tmp_path / "o")
    doc = json.loads(utm["areas"].read_text())
    # 0.3 m UTM pixels near the central meridian: true area = map area / 0.9996² (+0.08 %)
    expected = 60 * 80 * 0.09 / 1e6 / 0.9996**2
    assert doc["total_km2"] == pytest.approx(expected, rel=5e-4)
    km2 = {c["name"]: c["km2"] for c in doc["classes"]}
    px = {c["name"]: c["pixels"] for c in doc["classes"]}
    assert all(km2[n] == pytest.approx(px[n] * expected / 4800, rel=1e-3) for n in km2)
    geo = Affine(1e-4, 0, 10.0, 0, -1e-4, 0.003)  # just north of the equator
    doc = json.loads(predict_file(
        predictor, write_geotiff(tmp_path / "geo.tif", image, crs="EPSG:4326", transform=geo), tmp_path / "o"
    )["areas"].read_text())
    # WGS84 at the equator: 1e-4 deg = 11.132 m east-west, 11.057 m north-south
    assert doc["total_km2"] == pytest.approx(4800 * 11.1319 * 11.0574 / 1e6, rel=2e-3)
    assert doc["crs"] == "EPSG:4326"


def test_probabilities_geotiff(tmp_path):
    image = random_image(70, 90, dtype=np.uint16) * 4 + 1
    image[:, :5, :5] = 0
    src = write_geotiff(tmp_path / "p.tif", image, nodata=0)
    predictor = make_predictor(mean=(400.0, 440.0, 480.0), std=(200.0,) * 3)
    paths = predict_file(predictor, src, tmp_path / "o", probabilities=True)
    with rasterio.open(paths["probabilities"]) as ds, rasterio.open(paths["classes"]) as cls:
        assert ds.count == K and ds.dtypes[0] == "uint8" and ds.nodata == 255
        assert ds.descriptions == ("a", "b", "c", "d") and ds.scales[0] == pytest.approx(1 / 254)
        assert ds.crs == cls.crs and ds.transform == cls.transform
        probs, classes = ds.read(), cls.read(1)
    assert (probs[:, :5, :5] == 255).all()
    valid = classes != 255
    total = probs.astype(int).sum(axis=0)[valid]
    assert np.abs(total - 254).max() <= K  # rounding of each band
    picked = np.take_along_axis(probs, classes[None].astype(np.int64) % K, axis=0)[0]
    assert (picked[valid] >= probs.max(axis=0)[valid] - 1).all()  # the class has the top probability


def test_plain_images_are_predicted_with_a_warning(tmp_path, caplog):
    predictor = make_predictor()
    rgb = random_image(60, 80).transpose(1, 2, 0)
    for name in ("plain.png", "plain.jpg"):
        src = tmp_path / name
        Image.fromarray(rgb).save(src)
        with caplog.at_level(logging.WARNING):
            results = predict_files(predictor, [src], tmp_path / name.replace(".", "_"), show_progress=False)
        assert "no georeferencing" in results[0].warnings[0] and name in results[0].warnings[0]
        assert "no georeferencing" in caplog.text
        with rasterio.open(results[0]["classes"]) as ds:
            assert ds.crs is None and ds.transform == Affine.identity()
            assert ds.read(1).max() < K
        assert json.loads(results[0]["areas"].read_text())["total_km2"] is None


def test_large_scene_preview_is_downsampled(tmp_path):
    src = tmp_path / "big.png"
    Image.fromarray(random_image(150, 250).transpose(1, 2, 0)).save(src)
    paths = predict_file(make_predictor(window=64, keep=48, batch_size=8), src, tmp_path / "o", preview_max=100)
    with Image.open(paths["color"]) as im:
        assert im.size == (84, 50) and im.mode == "P"  # step 3, palette of the class colours
        assert im.getpalette()[3:6] == [0, 255, 0]
    with Image.open(paths["blend"]) as im:
        assert im.size == (84, 50) and im.mode == "RGB"
    with rasterio.open(paths["classes"]) as ds:
        assert (ds.width, ds.height) == (250, 150)


@pytest.mark.parametrize("bands,selected", [(1, None), (10, None), (10, [3, 2, 1])])
def test_one_and_ten_band_inputs(tmp_path, bands, selected):
    image = random_image(100, 233, dtype=np.uint16, bands=bands) * 10
    src = write_geotiff(tmp_path / f"b{bands}.tif", image)
    n = len(selected) if selected else bands
    predictor = make_predictor(window=64, keep=48, mean=(1000.0,) * n, std=(500.0,) * n, bands=selected)
    paths = predict_file(predictor, src, tmp_path / "o")
    with rasterio.open(paths["classes"]) as ds:
        np.testing.assert_array_equal(ds.read(1), reference_stitch(predictor, image))
    with Image.open(paths["blend"]) as im:
        assert im.size == (233, 100)


def test_fast_blend_tta_outputs(tmp_path):
    src = write_geotiff(tmp_path / "m.tif", random_image(150, 170))
    predictor = make_predictor(window=64, keep=48)
    ref = predict_file(predictor, src, tmp_path / "ref")
    got = predict_file(predictor, src, tmp_path / "fast", mode="fast", fast_tile=96, blend="cosine", tta=True,
                       probabilities=True)
    with rasterio.open(ref["classes"]) as a, rasterio.open(got["classes"]) as b:
        assert b.tags()["rsseg_blend"] == "cosine" and b.tags()["rsseg_tta"] == "true"
        assert (a.read(1) == b.read(1)).mean() > 0.5 and b.read(1).max() < K
    doc = json.loads(got["areas"].read_text())
    assert doc["mode"] == "fast" and doc["keep"] == [80, 96] and doc["window"] == [96, 112]


def test_skip_existing(tmp_path):
    src = write_geotiff(tmp_path / "s.tif", random_image(40, 40))
    predictor = make_predictor(window=64, keep=48)
    first = predict_files(predictor, [src], tmp_path / "o", show_progress=False)[0]
    again = predict_files(predictor, [src], tmp_path / "o", show_progress=False, skip_existing=True)[0]
    assert again.skipped and not first.skipped and dict(again) == dict(first)


def _is_block_mode(coarse: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """Per coarse pixel: False where it is not a most frequent valid value of its 2 x 2 block
    of ``fine`` (255 = nodata, where the whole block is nodata)."""
    h, w = coarse.shape
    blocks = fine.reshape(h, 2, w, 2).transpose(0, 2, 1, 3).reshape(h, w, 4)
    counts = np.stack([(blocks == k).sum(axis=-1) for k in range(K)], axis=-1)
    valid = (blocks != 255).any(axis=-1)
    chosen = np.take_along_axis(counts, np.minimum(coarse, K - 1)[..., None], axis=-1)[..., 0]
    return np.where(valid, (coarse != 255) & (chosen == counts.max(axis=-1)), coarse == 255)


def test_overviews_take_the_most_frequent_class_and_skip_nodata(tmp_path):
    """600 x 520 px -> overviews at 1/2 and 1/4 (300 px, then 150 px <= 256). GDAL builds each
    level from the one above it: every overview pixel is a most frequent valid class of its
    2 x 2 block there, and nodata only where the whole block is nodata."""
    from rsseg.infer.writers import overview_factors

    assert overview_factors(600, 520) == [2, 4] and overview_factors(256, 100) == []
    assert overview_factors(6800, 7200) == [2, 4, 8, 16, 32]
    image = random_image(600, 520, dtype=np.uint16) * 4 + 1
    image[:, :64, :64] = 0  # a nodata corner: whole overview blocks of nodata
    image[:, 100:101, 200:600] = 0  # a nodata row: its 2 x 2 blocks keep a class
    src = write_geotiff(tmp_path / "scene.tif", image, nodata=0)
    predictor = make_predictor(mean=(400.0, 440.0, 480.0), std=(200.0,) * 3)
    paths = predict_file(predictor, src, tmp_path / "out", overviews=True, probabilities=True, cog=False)
    plain = predict_file(predictor, src, tmp_path / "plain", cog=False)  # a COG has overviews
    with rasterio.open(paths["classes"]) as ds, rasterio.open(plain["classes"]) as ref:
        assert ds.overviews(1) == [2, 4] and ref.overviews(1) == []
        assert ds.tags(ns="rio_overview")["resampling"] == "mode"
        full = ds.read(1)
        np.testing.assert_array_equal(full, ref.read(1))  # the full-resolution map is unchanged
        half, quarter = ds.read(1, out_shape=(300, 260)), ds.read(1, out_shape=(150, 130))
    assert _is_block_mode(half, full).all() and _is_block_mode(quarter, half).all()
    assert (quarter[:16, :16] == 255).all() and (half[50, 100:] != 255).all()
    assert (half != full[::2, ::2]).mean() > 0.05  # not a nearest-neighbour read
    with rasterio.open(paths["probabilities"]) as ds:
        assert ds.overviews(1) == [2, 4] and ds.tags(ns="rio_overview")["resampling"] == "average"


def test_default_outputs_are_cogs_with_styles_and_a_stac_item_and_can_be_plain(tmp_path):
    from rio_cogeo.cogeo import cog_validate

    image = random_image(300, 280, dtype=np.uint16) * 4 + 1
    src = write_geotiff(tmp_path / "scene.tif", image)
    predictor = make_predictor(mean=(400.0, 440.0, 480.0), std=(200.0,) * 3)
    paths = predict_file(predictor, src, tmp_path / "gis", confidence="max", vector="geojson")
    for key in ("classes", "confidence"):
        assert cog_validate(str(paths[key]), quiet=True)[0], key
    assert {"classes_qml", "confidence_qml", "polygons", "polygons_qml", "item"} <= set(paths)
    assert all(p.exists() for p in paths.values())
    item = json.loads(paths["item"].read_text())
    assert item["properties"]["rsseg:input"] == str(src.resolve())
    assert {"classes", "confidence", "polygons", "areas"} <= set(item["assets"])
    plain = predict_file(predictor, src, tmp_path / "plain", cog=False, stac=False)
    assert "item" not in plain and not (tmp_path / "plain" / "scene_item.json").exists()
    with rasterio.open(paths["classes"]) as a, rasterio.open(plain["classes"]) as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))  # the same map either way
        assert a.colormap(1) == b.colormap(1) and a.tags()["classes"] == b.tags()["classes"]
