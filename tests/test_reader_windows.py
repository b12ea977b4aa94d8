"""Windows cut from strips: views, np.pad at the edges, gathers where padding exceeds the
scene; all equal to indexing the reflect-padded scene."""

from __future__ import annotations

import numpy as np
import pytest

from rsseg.infer.reader import ArraySource, StripReader, _reflect_split
from rsseg.infer.windows import plan_grid


@pytest.mark.parametrize(("h", "w", "mode", "tile"), [
    (500, 700, "reference", 1024), (100, 37, "reference", 1024), (12, 9, "reference", 1024), (1, 40, "reference", 1024),
    (2100, 1900, "fast", 1024), (700, 530, "fast", 256), (20, 300, "fast", 64), (300, 300, "naive", 1024),
    (6800, 40, "fast", 1024), (37, 2049, "fast", 512),
])
def test_every_window_equals_the_padded_scene(h, w, mode, tile):
    rng = np.random.default_rng(h * w)
    image = rng.integers(0, 255, (2, h, w), dtype=np.uint8)
    grid = plan_grid(h, w, mode, 256, 224, tile)
    m = grid.margin
    ys, xs = grid.row_starts, grid.col_starts
    padded = np.pad(image, ((0, 0), (m, ys[-1] - h + m), (m, xs[-1] - w + m)), mode="reflect")
    reader = StripReader(ArraySource(image), grid)
    for i in range(grid.rows):
        strip = reader.strip(i)
        for j in range(grid.cols):
            expected = padded[:, ys[i] : ys[i + 1] + 2 * m, xs[j] : xs[j + 1] + 2 * m]
            np.testing.assert_array_equal(strip.window(j), expected)


def test_reflect_split_recognises_single_reflections_only():
    assert _reflect_split(np.arange(5, 15)) == (0, 5, 15, 0)
    assert _reflect_split(np.pad(np.arange(0, 10), (3, 0), mode="reflect")) == (3, 0, 10, 0)
    assert _reflect_split(np.pad(np.arange(0, 10), (0, 4), mode="reflect")) == (0, 0, 10, 4)
    assert _reflect_split(np.pad(np.arange(0, 4), (9, 9), mode="reflect")) is not None  # np.pad repeats it
    assert _reflect_split(np.array([3, 3, 3])) is None
    assert _reflect_split(np.array([0, 1, 2, 7, 8])) is None
