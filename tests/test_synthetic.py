"""Synthetic scene generator: determinism, class coverage, GeoTIFF output, dataset caching."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import rasterio

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.data.synthetic import (
    SYNTHETIC_CLASSES,
    generate_dataset,
    generate_large_scene,
    generate_scene,
    write_scene,
)
from rsseg.errors import RsSegError


def test_class_table():
    assert SYNTHETIC_CLASSES.names == (
        "bare land", "cropland", "forest", "water", "road", "building", "urban ground")
    assert SYNTHETIC_CLASSES.ignore == ()
    assert len(set(SYNTHETIC_CLASSES.colors)) == 7


def test_deterministic_and_seed_dependent():
    a_img, a_mask = generate_scene(200, 180, seed=5)
    b_img, b_mask = generate_scene(200, 180, seed=5)
    c_img, c_mask = generate_scene(200, 180, seed=6)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_mask, b_mask)
    assert not np.array_equal(a_img, c_img)
    assert not np.array_equal(a_mask, c_mask)


@pytest.mark.parametrize("shape", [(300, 517), (64, 64), (1100, 70)])
def test_shapes_and_dtypes(shape):
    image, mask = generate_scene(*shape, seed=3)
    assert image.shape == (3, *shape) and image.dtype == np.uint8
    assert mask.shape == shape and mask.dtype == np.uint8
    assert mask.max() < SYNTHETIC_CLASSES.num_classes
    assert image.std() > 10  # a real picture, not a flat fill


def test_bad_size():
    with pytest.raises(RsSegError):
        generate_scene(4, 512, seed=0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_every_class_present_in_512_scene(seed):
    image, mask = generate_scene(512, 512, seed=seed)
    frac = np.bincount(mask.ravel(), minlength=7) / mask.size
    assert (frac > 0.004).all(), frac  # every class visible, buildings included
    assert frac.max() < 0.6, frac  # no class swamps the scene
    assert 0.02 < frac[[0, 1, 2, 3]].min()  # the big land-cover classes are not slivers


def test_classes_differ_in_appearance():
    """Mean colours per class are distinct: a CNN has something to learn from."""
    image, mask = generate_scene(512, 512, seed=11)
    means = np.stack([image[:, mask == c].mean(axis=1) for c in range(7)])
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert dist[~np.eye(7, dtype=bool)].min() > 8, means


def test_write_scene_round_trip(tmp_path):
    image, mask = generate_scene(130, 250, seed=2)
    img_path, mask_path = tmp_path / "img.tif", tmp_path / "sub" / "mask.tif"
    write_scene(image, mask, img_path, mask_path, crs="EPSG:32632", origin=(400000.0, 5000000.0),
                pixel_size=2.0)
    with rasterio.open(img_path) as src:
        assert src.count == 3 and src.dtypes == ("uint8",) * 3
        assert src.crs.to_epsg() == 32632
        assert tuple(src.transform)[:6] == (2.0, 0.0, 400000.0, 0.0, -2.0, 5000000.0)
        assert src.profile["tiled"] and src.profile["compress"] == "deflate"
        np.testing.assert_array_equal(src.read(), image)
    with rasterio.open(mask_path) as src:
        assert src.count == 1 and src.nodata == IGNORE_INDEX
        assert src.crs.to_epsg() == 32632
        assert tuple(src.transform)[:6] == (2.0, 0.0, 400000.0, 0.0, -2.0, 5000000.0)
        np.testing.assert_array_equal(src.read(1), mask)
        cmap = src.colormap(1)
        for i, color in enumerate(SYNTHETIC_CLASSES.colors):
            assert cmap[i][:3] == color
    leftovers = sorted(p.name for p in tmp_path.rglob("*"))
    assert leftovers == ["img.tif", "mask.tif", "sub"]  # no temporary files left behind


def test_write_scene_image_only_and_validation(tmp_path):
    image, mask = generate_scene(64, 64, seed=1)
    write_scene(image, None, tmp_path / "a.tif", None)
    assert (tmp_path / "a.tif").is_file()
    with pytest.raises(RsSegError):
        write_scene(image[:2], mask, tmp_path / "b.tif", tmp_path / "bm.tif")
    with pytest.raises(RsSegError):
        write_scene(image, mask[:10], tmp_path / "c.tif", tmp_path / "cm.tif")


def _mtimes(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*.tif")}


def test_generate_dataset_layout_and_skip(tmp_path):
    root = tmp_path / "ds"
    out = generate_dataset(root, splits={"train": 2, "val": 1}, size=(96, 128), seed=4,
                           progress=False)
    assert out == root
    for split, n in (("train", 2), ("val", 1)):
        for kind in ("images", "masks"):
            assert sorted(p.name for p in (root / split / kind).iterdir()) == [
                f"scene_{i:03d}.tif" for i in range(n)]
    assert ClassTable.load(root / "classes.json") == SYNTHETIC_CLASSES
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["params"]["size"] == [96, 128] and manifest["params"]["seed"] == 4
    with rasterio.open(root / "train/images/scene_000.tif") as src:
        assert src.shape == (96, 128)
        t0 = src.transform
    origins, seeds = set(), set()
    for split, n in (("train", 2), ("val", 1)):
        for i in range(n):
            with rasterio.open(root / split / "masks" / f"scene_{i:03d}.tif") as src:
                origins.add((src.transform.c, src.transform.f))
                seeds.add(src.read(1).tobytes())
    assert len(origins) == 3 and len(seeds) == 3 and (t0.c, t0.f) in origins

    before = _mtimes(root)
    generate_dataset(root, splits={"train": 2, "val": 1}, size=(96, 128), seed=4, progress=False)
    assert _mtimes(root) == before  # unchanged parameters: nothing rewritten

    os.remove(root / "val/masks/scene_000.tif")  # a missing file is regenerated, the rest kept
    generate_dataset(root, splits={"train": 2, "val": 1}, size=(96, 128), seed=4, progress=False)
    after = _mtimes(root)
    assert after[root / "train/images/scene_000.tif"] == before[root / "train/images/scene_000.tif"]
    assert (root / "val/masks/scene_000.tif").is_file()

    generate_dataset(root, splits={"train": 1}, size=(96, 128), seed=5, progress=False)
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*.tif")) == [
        "train/images/scene_000.tif", "train/masks/scene_000.tif"]  # stale scenes removed
    assert json.loads((root / "manifest.json").read_text())["params"]["seed"] == 5


def test_generate_dataset_different_seed_changes_content(tmp_path):
    a = generate_dataset(tmp_path / "a", splits={"train": 1}, size=64, seed=0, progress=False)
    b = generate_dataset(tmp_path / "b", splits={"train": 1}, size=64, seed=1, progress=False)
    with rasterio.open(a / "train/images/scene_000.tif") as sa, \
            rasterio.open(b / "train/images/scene_000.tif") as sb:
        assert not np.array_equal(sa.read(), sb.read())


def test_generate_dataset_unwritable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RsSegError, match=str(blocker)):
        generate_dataset(blocker / "ds", splits={"train": 1}, size=64, progress=False)
    with pytest.raises(RsSegError):
        generate_dataset(tmp_path / "x", splits={"../up": 1}, size=64, progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_generate_dataset_read_only_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(RsSegError, match="ro"):
            generate_dataset(ro, splits={"train": 1}, size=64, progress=False)
    finally:
        ro.chmod(0o700)


def test_generate_large_scene(tmp_path):
    path = generate_large_scene(tmp_path / "big.tif", size=600, seed=9,
                                mask_path=tmp_path / "big_mask.tif")
    image, mask = generate_scene(600, 600, seed=9)
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(), image)
    with rasterio.open(tmp_path / "big_mask.tif") as src:
        np.testing.assert_array_equal(src.read(1), mask)
