"""Fake ISPRS Vaihingen: ``top/top_mosaic_09cm_areaN.tif`` (IRRG) and eroded labels
``top_mosaic_09cm_areaN_noBoundary.tif`` (RGB-coded) in the ground-truth archive's folder.
"""

from __future__ import annotations

from pathlib import Path

from fakedata._io import colorize, image, labels, write_rgb_tif, write_tif

COLORS = [(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0)]
AREAS = [1, 3, 5, 7, 2, 4]  # 2 and 4 are benchmark test areas


def make(root: Path) -> Path:
    root = Path(root)
    gt = root / "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE"
    for k, area in enumerate(AREAS):
        write_tif(root / "top" / f"top_mosaic_09cm_area{area}.tif", image(k, 36, 44))
        rgb = colorize(labels(k, 36, 44, list(range(6))), COLORS)
        rgb[10, :] = 0
        write_rgb_tif(gt / f"top_mosaic_09cm_area{area}_noBoundary.tif", rgb)
    return root
