"""Fake multispectral pairs like ../shared/data/sentinel2-strzegom: ``img_train/*.tif``
(6 uint16 bands named B02..B08 in the band descriptions) and ``training_masks/*.tif``
(float32, 0 = unlabelled and the file's nodata, 1..5 classes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fakedata._io import image, labels, write_tif

BANDS = ["B02", "B03", "B04", "B05", "B06", "B08"]
DATES = ["20210619", "20220619", "20220719", "20221012", "20230209"]


def make(root: Path) -> Path:
    root = Path(root)
    for k, date in enumerate(DATES):
        name = f"area_{date}.tif"
        write_tif(root / "img_train" / name, image(k, 30, 34, bands=6, dtype=np.uint16, high=4000),
                  descriptions=BANDS)
        write_tif(root / "training_masks" / name, labels(k, 30, 34, list(range(6))).astype(np.float32), nodata=0.0)
    return root
