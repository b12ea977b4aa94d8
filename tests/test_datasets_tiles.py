"""Tiling: the cached scene index and chip grid, bad inputs, exclusions, the transform hook."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from fakedata import dubai, folder, multispectral
from fakedata._io import labels, write_tif
from PIL import Image

from rsseg.classes import IGNORE_INDEX
from rsseg.config.data import DataConfig
from rsseg.data.datasets import get_source
from rsseg.data.rasters import open_raster
from rsseg.data.tiles import TileDataset, band_stats
from rsseg.errors import RsSegError


def make_source(name, root, tmp_path, **extra):
    src = get_source(DataConfig(**{"dataset": name, "root": root, "cache_dir": tmp_path / "cache",
                                   "tile_size": 16, **extra}))
    src.prepare(progress=False)
    return src


def files_under(path):
    return sorted(p for p in path.rglob("*") if p.is_file())


def test_index_and_chips_cached_and_rebuilt_when_a_file_changes(tmp_path):
    root = folder.make(tmp_path / "f")
    src = make_source("folder", root, tmp_path)
    scenes = src.scenes("train")
    first = src.tile_dataset(scenes)
    assert first.scanned == 3 and not first.chips_cached
    assert len(first) == 3 * 3 * 3  # 40 px scenes, 16 px chips: 3 x 3 each
    again = src.tile_dataset(scenes)
    assert again.scanned == 0 and again.chips_cached
    assert [c.__dict__ for c in again.chips] == [c.__dict__ for c in first.chips]
    np.testing.assert_allclose(again.mean, first.mean)
    # edit one mask: only that scene is read again, and the chip grid is rebuilt
    mask = scenes[0].mask
    write_tif(mask, np.zeros((40, 40), dtype=np.uint8))
    st = mask.stat()
    os.utime(mask, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    edited = src.tile_dataset(scenes)
    assert edited.scanned == 1 and not edited.chips_cached
    assert edited.records[0]["counts"] == {"0": 1600}
    # a new tile size reuses the scan but builds a new chip grid
    cfg = src.cfg.model_copy(update={"tile_size": 32})
    bigger = get_source(cfg).tile_dataset(scenes)
    assert bigger.scanned == 0 and not bigger.chips_cached and len(bigger) == 3 * 2 * 2
    cache = json.loads(next((tmp_path / "cache").glob("folder-*/scenes.json")).read_text())
    assert len(cache["records"]) == 3  # the edited scene's old record is dropped


def test_read_only_root_is_never_written(tmp_path):
    root = dubai.make(tmp_path / "d")
    before = files_under(root)
    src = make_source("dubai", root, tmp_path)
    ds = src.tile_dataset(src.scenes("train"), train=True)
    ds[0]
    assert files_under(root) == before
    assert list((tmp_path / "cache").glob("dubai-*/scenes.json"))


def test_default_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RSSEG_CACHE_DIR", str(tmp_path / "env-cache"))
    src = get_source(DataConfig(dataset="folder", root=folder.make(tmp_path / "f")))
    assert src.cache_dir().parent == tmp_path / "env-cache"
    src.tile_dataset(src.scenes("val"))
    assert list((tmp_path / "env-cache").glob("folder-*/scenes.json"))


def test_chips_match_windows_and_band_selection_by_name(tmp_path):
    cfg = {"images": "img_train/*.tif", "masks": "training_masks/*.tif", "bands": ["B08", "B02"],
           "classes": [{"name": f"c{v}", "value": v} for v in range(1, 6)]}
    src = make_source("multispectral", multispectral.make(tmp_path / "m"), tmp_path, **cfg)
    scene = src.scenes("train")[0]
    ds = src.tile_dataset([scene], mean=[100.0, 10.0], std=[2.0, 4.0])
    with open_raster(scene.image) as f:
        raw = f.read([6, 1]).astype(np.float32)
    image, mask = ds[len(ds) - 1]  # the last chip: bottom-right corner, within the 30 x 34 scene
    chip = ds.chips[-1]
    window = raw[:, chip.row : chip.row + 16, chip.col : chip.col + 16]
    np.testing.assert_allclose(image.numpy()[0], (window[0] - 100) / 2, rtol=1e-6)
    np.testing.assert_allclose(image.numpy()[1], (window[1] - 10) / 4, rtol=1e-6)
    full = src.read_mask(scene)
    np.testing.assert_array_equal(mask.numpy(), full[chip.row : chip.row + 16, chip.col : chip.col + 16])
    stats = src.tile_dataset([scene])
    expected = band_stats([scene.image], [6, 1])
    np.testing.assert_allclose(stats.mean, expected[0])
    np.testing.assert_allclose(stats.std, expected[1])


def test_chip_past_the_edge_is_padded_with_no_label(tmp_path):
    src = make_source("dubai", dubai.make(tmp_path / "d"), tmp_path, tile_size=64)
    ds = src.tile_dataset(src.scenes("val")[:1], mean=[0, 0, 0], std=[1, 1, 1])
    image, mask = ds[0]  # 36 x 36 scene in a 64 px chip
    assert (mask[36:] == IGNORE_INDEX).all() and (image[:, :, 36:] == 0).all()
    assert (mask[:36, :36] != IGNORE_INDEX).any()


def test_jpeg_is_decoded_once_and_kept_tiffs_are_windowed(tmp_path):
    src = make_source("dubai", dubai.make(tmp_path / "d"), tmp_path)
    ds = src.tile_dataset(src.scenes("train")[:1])
    for i in range(len(ds)):
        ds[i]
    assert len(ds.reader._decoded) == 2  # the JPEG and its PNG mask, decoded whole once
    src = make_source("folder", folder.make(tmp_path / "f"), tmp_path)
    tif = src.tile_dataset(src.scenes("train"))
    for i in range(len(tif)):
        tif[i]
    assert not tif.reader._decoded  # GeoTIFFs: window reads only


def test_transform_hook_replaces_default_augmentation(tmp_path):
    src = make_source("folder", folder.make(tmp_path / "f"), tmp_path)
    seen = []

    def transform(image, mask):
        seen.append((image.dtype, image.ndim, mask.dtype, mask.shape))
        return image[:, ::-1] * 0 + 1, np.full_like(mask, 2)

    ds = src.tile_dataset(src.scenes("train"), train=True, transform=transform)
    image, mask = ds[0]
    assert seen == [(np.float32, 3, np.uint8, (16, 16))]
    assert image.dtype == torch.float32 and (image == 1).all() and mask.dtype == torch.int64 and (mask == 2).all()
    plain = src.tile_dataset(src.scenes("train"), transform=transform)
    plain[0]
    assert len(seen) == 1  # not a training dataset: no transform
    torch.manual_seed(0)
    augmented = src.tile_dataset(src.scenes("train"), train=True)
    assert augmented.transform is not None and augmented[0][0].shape == (3, 16, 16)  # data.augment (D4)
    src.cfg.augment = False  # legacy boolean: D4 off -> nothing to apply
    assert src.tile_dataset(src.scenes("train"), train=True).transform is None


def test_unreadable_file_raises_naming_it_or_is_skipped_and_reported(tmp_path):
    root = dubai.make(tmp_path / "d")
    bad = root / "Tile 1" / "images" / "image_part_001.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
    src = make_source("dubai", root, tmp_path)
    with pytest.raises(RsSegError, match="image_part_001.jpg"):
        src.tile_dataset(src.scenes("train"))
    lenient = make_source("dubai", root, tmp_path, on_error="skip")
    ds = lenient.tile_dataset(lenient.scenes("train"))
    assert [s.scene for s in ds.skipped] == ["Tile 1/image_part_001"]
    assert str(bad) in ds.skipped[0].problem
    assert len(ds.scenes) == 9


def test_size_mismatch_and_missing_mask(tmp_path):
    root = dubai.make(tmp_path / "d")
    mask = root / "Tile 1" / "masks" / "image_part_002.png"
    Image.fromarray(np.asarray(Image.open(mask).convert("RGB"))[:-4]).save(mask)
    (root / "Tile 2" / "masks" / "image_part_001.png").unlink()
    with pytest.raises(RsSegError, match="no mask .*Tile 2/masks/image_part_001.png"):
        make_source("dubai", root, tmp_path).all_scenes()
    src = make_source("dubai", root, tmp_path, on_error="skip")
    assert [s.scene for s in src.skipped] == []
    ds = src.tile_dataset(src.scenes("train"))
    assert [s.scene for s in src.skipped] == ["Tile 2/image_part_001"]
    assert len(ds.skipped) == 1 and "is 48x36 but image" in ds.skipped[0].problem


def test_non_integral_float_mask_is_an_error(tmp_path):
    root = multispectral.make(tmp_path / "m")
    path = sorted((root / "training_masks").glob("*.tif"))[1]
    write_tif(path, labels(1, 30, 34, [1, 2]).astype(np.float32) + 0.5)
    cfg = {"images": "img_train/*.tif", "masks": "training_masks/*.tif",
           "classes": [{"name": f"c{v}", "value": v} for v in range(1, 6)]}
    src = make_source("multispectral", root, tmp_path, **cfg)
    with pytest.raises(RsSegError, match="non-integer values"):
        src.tile_dataset(src.all_scenes())


def test_exclusion_list_by_scene_id_or_image_path(tmp_path):
    root = dubai.make(tmp_path / "d")
    exclude = tmp_path / "exclude.json"
    image = root / "Tile 4" / "images" / "image_part_002.jpg"
    exclude.write_text(json.dumps(["Tile 1/image_part_001", str(image)]))
    src = make_source("dubai", root, tmp_path, exclude=exclude)
    ids = {s.id for s in src.all_scenes()}
    assert len(ids) == 12 and "Tile 1/image_part_001" not in ids and "Tile 4/image_part_002" not in ids
    exclude.write_text("{}")
    with pytest.raises(RsSegError, match="JSON list of scene ids"):
        make_source("dubai", root, tmp_path, exclude=exclude).all_scenes()


def test_bands_beyond_the_image_are_bad_input(tmp_path):
    src = make_source("folder", folder.make(tmp_path / "f"), tmp_path, bands=[1, 4])
    with pytest.raises(RsSegError, match="has 3 bands; data.bands asks for \\[1, 4\\]"):
        src.tile_dataset(src.scenes("train"))


def test_tile_dataset_without_source_keeps_old_behaviour(tmp_path):
    src = make_source("folder", folder.make(tmp_path / "f"), tmp_path)
    ds = TileDataset(src.scenes("train"), src.classes(), tile_size=16, mean=[0, 0, 0], std=[1, 1, 1])
    _, mask = ds[0]
    assert set(np.unique(mask.numpy())) <= {0, 1, 2, IGNORE_INDEX}
    bad = src.scenes("train")[0].mask
    write_tif(bad, np.full((40, 40), 7, dtype=np.uint8))
    with pytest.raises(RsSegError, match="7 x 1600 px"):
        TileDataset(src.scenes("train"), src.classes(), tile_size=16)
