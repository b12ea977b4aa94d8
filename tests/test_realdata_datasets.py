"""Dataset loaders on the real samples in ../shared/data (skipped where absent, failing in CI)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rsseg.classes import IGNORE_INDEX
from rsseg.config.data import DataConfig
from rsseg.data.datasets import get_source
from rsseg.data.rasters import open_raster

pytestmark = pytest.mark.realdata

DUBAI_COLORS = {  # ../shared/data/README.md: the colours the masks really use
    (60, 16, 152): 0, (132, 41, 246): 1, (110, 193, 228): 2, (254, 221, 58): 3, (226, 169, 41): 4,
    (155, 155, 155): 5,
}
STRZEGOM = ["conifer forest", "mixed forest", "urban", "crops", "bare soil", "permanent grassland",
            "roads", "water", "crops (vegetation stage)", "quarries"]


def source(shared_data, tmp_path, name, folder, **extra):
    cfg = DataConfig(dataset=name, root=shared_data / folder, cache_dir=tmp_path / "cache", **extra)
    src = get_source(cfg)
    src.prepare(progress=False)
    return src


def test_dubai_every_pixel_decodes_exactly_and_splits_by_tile(shared_data, tmp_path):
    src = source(shared_data, tmp_path, "dubai", "dubai-aerial")
    assert [len(src.scenes(s)) for s in ("train", "val", "test")] == [45, 9, 9]
    assert {s.group for s in src.scenes("train")} == {f"Tile {i}" for i in range(1, 6)}
    assert {s.group for s in src.scenes("val")} == {"Tile 6"} and {s.group for s in src.scenes("test")} == {"Tile 7"}
    palette_masks = 0
    for scene in src.all_scenes():
        rgb = np.asarray(Image.open(scene.mask).convert("RGB")).reshape(-1, 3)
        palette_masks += Image.open(scene.mask).mode == "P"
        keys = (rgb[:, 0].astype(np.int64) << 16) | (rgb[:, 1].astype(np.int64) << 8) | rgb[:, 2]
        colors, counts = np.unique(keys, return_counts=True)
        expected = np.zeros(256, dtype=np.int64)
        for key, n in zip(colors, counts, strict=True):
            rgb_key = ((key >> 16) & 255, (key >> 8) & 255, key & 255)
            assert rgb_key == (0, 0, 0) or rgb_key in DUBAI_COLORS, (scene.mask, rgb_key)
            expected[DUBAI_COLORS.get(rgb_key, IGNORE_INDEX)] += n  # black: no label
        got = np.bincount(src.read_mask(scene).ravel(), minlength=256)
        np.testing.assert_array_equal(got, expected, err_msg=str(scene.mask))
    assert palette_masks == 18  # tiles 2 and 4
    table = src.classes()
    assert table.names[table.ignore[0]] == "unlabeled" and len(table.ignore) == 1


def test_dubai_training_chips_leave_unlabeled_and_black_out(shared_data, tmp_path):
    src = source(shared_data, tmp_path, "dubai", "dubai-aerial", tile_size=128)
    scene = next(s for s in src.scenes("train") if s.id == "Tile 3/image_part_006")  # has black pixels
    ds = src.tile_dataset([scene])
    assert ds.class_counts[5] > 0  # unlabeled is counted as its (ignored) class
    labels = set()
    for i in range(len(ds)):
        labels |= set(np.unique(ds[i][1].numpy()).tolist())
    assert 5 not in labels and IGNORE_INDEX in labels and labels - {IGNORE_INDEX} <= {0, 1, 2, 3, 4}


def test_loveda_sample(shared_data, tmp_path):
    src = source(shared_data, tmp_path, "loveda", "loveda-sample", split={"train": ["0", "1"], "test": ["2"]})
    assert src.classes().names == ("background", "building", "road", "water", "barren", "forest", "agriculture")
    assert [s.id for s in src.scenes("train")] == ["0", "1"] and [s.id for s in src.scenes("test")] == ["2"]
    for scene in src.all_scenes():
        raw = np.asarray(Image.open(scene.mask)).astype(np.int16)
        np.testing.assert_array_equal(src.read_mask(scene), np.where(raw == 0, IGNORE_INDEX, raw - 1))
    ds = src.tile_dataset(src.scenes("train"), train=True)
    assert len(ds) == 2 * 5 * 5 and ds[0][0].shape == (3, 224, 224)
    assert ds.class_counts.sum() == 2 * 1024 * 1024  # the sample has no no-data pixels


@pytest.mark.parametrize(("name", "tile"), [("potsdam", "2_10"), ("vaihingen", "area1")])
def test_isprs_samples_in_mmseg_form(shared_data, tmp_path, name, tile):
    src = source(shared_data, tmp_path, name, f"isprs-sample/{name}")
    (scene,) = src.all_scenes()
    assert scene.group == tile and src.official_split(scene) == "trainval"
    assert src.scenes("train") == [scene]
    raw = np.asarray(Image.open(scene.mask)).astype(np.int16)
    mask = src.read_mask(scene)
    np.testing.assert_array_equal(mask, np.where(raw == 0, IGNORE_INDEX, raw - 1))
    assert (mask == src.classes().names.index("building")).sum() == (raw == 2).sum() > 1000
    assert (mask == IGNORE_INDEX).sum() == (raw == 0).sum() > 0  # boundaries


def test_sentinel2_ten_bands_float_masks_band_names(shared_data, tmp_path):
    classes = [{"name": n, "value": v} for v, n in enumerate(STRZEGOM, start=1)]
    src = source(
        shared_data, tmp_path, "multispectral", "sentinel2-strzegom",
        images="img_train/*.tif", masks="training_masks/*.tif", classes=classes,
        bands=["B04", "B03", "B02", "B08"], tile_size=128,
        split={"train": ["*2021*", "*2022*"], "test": ["*2023*"]},
    )
    assert src.band_names() == ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
    assert src.band_indices() == [3, 2, 1, 7]
    assert [len(src.scenes(s)) for s in ("train", "test")] == [4, 2]
    scene = src.scenes("train")[0]
    with open_raster(scene.mask) as f:
        raw = f.read(1)
    assert raw.dtype == np.float32
    mask = src.read_mask(scene)
    np.testing.assert_array_equal(mask, np.where(raw == 0, IGNORE_INDEX, raw.astype(np.int16) - 1))
    ds = src.tile_dataset(src.scenes("train"), train=True)
    assert len(ds.mean) == 4 and ds[0][0].shape == (4, 128, 128)
    assert ds.class_counts.sum() == sum(int((src.read_mask(s) != IGNORE_INDEX).sum()) for s in ds.scenes)
    assert ds.mean[0] == pytest.approx(float(np.mean([_band_mean(s.image, 3) for s in ds.scenes])), rel=0.05)


def _band_mean(path, band):
    with open_raster(path) as f:
        return f.read(band).mean()
