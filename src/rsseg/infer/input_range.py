"""A warning when a scene lies outside the inputs an int8 model was calibrated on.

``rsseg quantize`` fixes the int8 ranges from windows of the calibration images and checks
the result on other windows of the same images, so it cannot see imagery unlike them. Beyond
the calibrated range, int8 activations saturate and the map silently departs from the fp32
model's: measured with the demo U-Net calibrated on its 8-bit training scenes, the int8 map
of the 16-bit ``landsat8-scene`` agreed with fp32 on 15.5 % of pixels, against 99.4 % on an
8-bit DeepGlobe image. The check costs a comparison per band on each scene pixel, in raw
units (the thresholds are mapped back through the normalisation), nodata pixels excluded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsseg.trained.predictor import Predictor

#: a pixel is outside when a band is beyond the calibrated range widened by this share of
#: its span on each side (the extremes of a small calibration sample are not hard limits)
SLACK = 0.1
#: warn when more than this share of a scene's valid pixels is outside
MAX_OUTSIDE = 0.01


class InputRangeCheck:
    """Counts the scene pixels whose normalised value in some band is outside the range."""

    def __init__(self, predictor: Predictor) -> None:
        assert predictor.input_range is not None
        low, high = (np.asarray(v, dtype=np.float64) for v in predictor.input_range)
        span = np.maximum(high - low, 1e-6)
        mean, std = np.asarray(predictor.mean, dtype=np.float64), np.asarray(predictor.std, dtype=np.float64)
        # normalised x = (raw - mean) / std with std > 0, so the order is kept in raw units
        self.low = (low - SLACK * span) * std + mean
        self.high = (high + SLACK * span) * std + mean
        self.bands = predictor.bands
        self.outside = self.total = 0

    def add(self, raw: np.ndarray, valid: np.ndarray | None) -> None:
        """``raw``: (file bands, h, w) scene rows; ``valid``: (h, w) non-nodata pixels or None."""
        x = raw[self.bands] if self.bands is not None else raw
        out = np.zeros(x.shape[1:], dtype=bool)
        for b, band in enumerate(x):
            out |= (band < self.low[b]) | (band > self.high[b])  # NaN compares False: not counted
        if valid is not None:
            out &= valid
            self.total += int(valid.sum())
        else:
            self.total += out.size
        self.outside += int(out.sum())

    @property
    def fraction(self) -> float:
        return self.outside / self.total if self.total else 0.0

    def warning(self, path: Path | None) -> str | None:
        if self.fraction <= MAX_OUTSIDE:
            return None
        return (
            f"{path or 'the image'}: {self.fraction:.1%} of its pixels lie outside the input range the "
            "int8 model was calibrated on, so its map may differ much from the fp32 model's: quantize "
            "again with images like this one (`rsseg quantize MODEL.onnx IMAGES...`) or predict with "
            "the fp32 file"
        )


def range_check(predictor: Predictor) -> InputRangeCheck | None:
    return InputRangeCheck(predictor) if predictor.input_range is not None else None
