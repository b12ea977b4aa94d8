"""Which pixels of a scene get a class: not the nodata value and, in float scenes, finite.

NaN and inf pixels of a float scene are nodata whether or not the file says so: the model
would see them as zeros (``WindowEngine.batches``) and map them as some class that the areas
then count. A pixel is non-finite when a band the model reads is. Integer scenes skip the
check (the dtype is looked at once), and float rows are summed first, so only rows that hold
a non-finite value pay for the per-pixel mask.

A scene without any valid pixel still gets its outputs, all nodata (areas of 0 valid pixels),
and a warning: in a batch of tiles an empty one at the edge of a mosaic is no error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsseg.infer.reader import SceneInfo, valid_mask


class ValidPixels:
    """``mask(raw)`` for each chunk of rows; counts what it left out for one warning a scene."""

    def __init__(self, info: SceneInfo, bands: list[int] | None = None) -> None:
        self.nodata, self.bands = info.nodata, bands
        self.floating = np.issubdtype(np.dtype(info.dtype), np.floating)
        self.total = self.nonfinite = 0
        self.any_valid = False

    def mask(self, raw: np.ndarray) -> np.ndarray | None:
        """(H, W) bool, False at nodata pixels; None when every pixel is valid."""
        valid = valid_mask(raw, self.nodata)
        if self.floating:
            x = raw[self.bands] if self.bands is not None else raw
            if not np.isfinite(x.sum()):  # overflow of the sum only costs the exact check
                finite = np.isfinite(x).all(axis=0)
                bad = ~finite if valid is None else ~finite & valid
                self.nonfinite += int(np.count_nonzero(bad))
                valid = finite if valid is None else valid & finite
        self.total += raw.shape[1] * raw.shape[2]
        if not self.any_valid:
            self.any_valid = valid is None or bool(valid.any())
        return valid

    def warnings(self, path: Path | None) -> list[str]:
        name = path or "the image"
        out = []
        if self.nonfinite:
            out.append(
                f"{name}: {self.nonfinite} pixels ({_share(self.nonfinite, self.total)}) hold NaN or "
                "infinite values: they are nodata (255) in the class map and left out of the areas"
            )
        if self.total and not self.any_valid:
            out.append(f"{name}: no valid pixels: every pixel is nodata")
        return out


def _share(part: int, total: int) -> str:
    """A percentage that does not round a few pixels of a big scene to 0."""
    share = part / total
    return f"{share:.2%}" if share >= 1e-4 else "under 0.01 %"
