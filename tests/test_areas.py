"""Pixel counts of the area summary: the same with and without a CRS, any chunking."""

from __future__ import annotations

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from rsseg.infer.areas import AreaCounter, _value_counts
from rsseg.infer.reader import SceneInfo


def _map(seed: int = 0, h: int = 150, w: int = 230, k: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, k, (h, w)).astype(np.uint8)
    classes[rng.random((h, w)) < 0.1] = 255
    return classes


def test_counts_match_bincount_with_and_without_crs():
    classes = _map()
    expected = np.bincount(classes.ravel(), minlength=256)
    plain = SceneInfo(None, 150, 230, 3, "uint8")
    utm = SceneInfo(None, 150, 230, 3, "uint8", crs=CRS.from_epsg(32633),
                    transform=Affine(10, 0, 500000, 0, -10, 5000000))
    for info in (plain, utm):
        counter = AreaCounter(info, 5)
        for y0 in range(0, 150, 70):  # uneven row chunks, as strips arrive
            counter.add(y0, classes[y0 : y0 + 70])
        np.testing.assert_array_equal(counter.pixels, expected)
    assert counter.km2.sum() > 0


def test_unexpected_values_fall_back_to_a_full_count():
    classes = _map(1)
    classes[3, 4] = 77  # not a class, not nodata
    np.testing.assert_array_equal(_value_counts(classes, 5), np.bincount(classes.ravel(), minlength=256))
