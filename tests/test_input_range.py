"""The calibrated-range check of int8 models, on its own: raw units, bands, nodata."""

from __future__ import annotations

import numpy as np

from rsseg.classes import ClassTable
from rsseg.infer.input_range import MAX_OUTSIDE, InputRangeCheck
from rsseg.trained.predictor import Predictor


class _Numpy:
    takes_numpy = True


def _predictor(bands=None, input_range=([-1.0, -1.0], [1.0, 1.0])):
    return Predictor(model=_Numpy(), classes=ClassTable(names=("a", "b"), colors=((0, 0, 0), (255, 255, 255))), mean=[100.0, 50.0],
                     std=[10.0, 5.0], bands=bands, input_range=input_range)


def test_thresholds_are_mapped_to_raw_units_with_slack():
    check = InputRangeCheck(_predictor())
    # normalised [-1, 1] widened by 10 % of its span (0.2) each side -> raw mean -/+ 1.2 std
    np.testing.assert_allclose(check.low, [88.0, 44.0])
    np.testing.assert_allclose(check.high, [112.0, 56.0])


def test_counts_pixels_with_any_band_outside_and_ignores_nodata():
    check = InputRangeCheck(_predictor())
    raw = np.stack([np.full((4, 5), 100.0), np.full((4, 5), 50.0)])
    raw[0, 0, :] = 200.0  # 5 pixels too bright in band 1
    raw[1, 1, :2] = 0.0  # 2 pixels too dark in band 2
    check.add(raw, None)
    assert (check.outside, check.total) == (7, 20)
    valid = np.ones((4, 5), dtype=bool)
    valid[0, :] = False  # the bright row is nodata
    check.add(raw, valid)
    assert (check.outside, check.total) == (9, 35)
    assert check.warning(None) is not None


def test_selected_bands_are_checked_and_small_excursions_pass():
    # the model reads file bands 3 and 1 (0-based 2, 0)
    check = InputRangeCheck(_predictor(bands=[2, 0]))
    raw = np.zeros((3, 10, 10))
    raw[2], raw[0] = 100.0, 50.0
    raw[1] = 1e6  # a band the model does not read
    raw[2, 0, 0] = 111.0  # inside the slack
    check.add(raw, None)
    assert check.outside == 0 and check.warning("x.tif") is None
    raw[2, :2, :] = 1e4  # 20 % of pixels
    check.add(raw, None)
    assert check.fraction == 20 / 200 > MAX_OUTSIDE
    assert check.warning("x.tif").startswith("x.tif: 10.0% of its pixels")
