"""Sample predictions for the report: image, ground truth, prediction, blend, per scene."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
from matplotlib.figure import Figure
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from rsseg.classes import IGNORE_INDEX
from rsseg.report.figures import to_png


def display_rgb(image: np.ndarray, rgb_bands: tuple[int, int, int] = (0, 1, 2)) -> np.ndarray:
    """(C, H, W) raw image -> (H, W, 3) uint8 with a 2-98 percentile stretch per band."""
    bands = [image[min(b, image.shape[0] - 1)].astype(np.float32) for b in rgb_bands]
    out = []
    for band in bands:
        finite = band[np.isfinite(band)]
        lo, hi = (np.percentile(finite, (2, 98)) if finite.size else (0.0, 1.0))
        scale = 255.0 / (hi - lo) if hi > lo else 1.0
        out.append(np.clip((band - lo) * scale, 0, 255))
    return np.nan_to_num(np.stack(out, axis=-1)).astype(np.uint8)


def _crop_window(path: Path, size: int) -> Window:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            h, w = src.height, src.width
    ch, cw = min(size, h), min(size, w)
    return Window((w - cw) // 2, (h - ch) // 2, cw, ch)


def _read(path: Path, window: Window) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read(window=window)


def _read_mask(source, scene, window: Window) -> np.ndarray | None:
    if scene.mask is None:
        return None
    if hasattr(source, "read_mask"):  # dataset-specific decoding (RGB colours, palettes...)
        return source.read_mask(scene, window=window)
    return _read(scene.mask, window)[0].astype(np.uint8)


def sample_figures(predictor, source, scenes, classes, *, count: int = 4, size: int = 384) -> list[bytes]:
    """One PNG row per scene: image | ground truth | prediction | blend, centre crops."""
    # lazy: the inference code (rasterio), only for the sample figures
    from rsseg.infer import border_corrected_predict

    palette = classes.palette().astype(np.float32)
    figures = []
    for scene in scenes[:count]:
        window = _crop_window(scene.image, size)
        image = _read(scene.image, window)
        pred = border_corrected_predict(predictor, image)
        truth = _read_mask(source, scene, window)
        rgb = display_rgb(image)
        pred_rgb = palette[pred].astype(np.uint8)
        blend = (0.55 * rgb + 0.45 * pred_rgb).astype(np.uint8)
        panels = [("image", rgb)]
        if truth is not None:
            truth_rgb = palette[np.where(truth == IGNORE_INDEX, 0, truth)].astype(np.uint8)
            truth_rgb[truth == IGNORE_INDEX] = (255, 255, 255)
            panels.append(("ground truth (white: ignored)", truth_rgb))
        panels += [("prediction", pred_rgb), ("blend", blend)]
        fig = Figure(figsize=(3.2 * len(panels), 3.5), layout="constrained")
        for ax, (title, arr) in zip(fig.subplots(1, len(panels)), panels, strict=True):
            ax.imshow(arr, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.suptitle(Path(scene.image).name, fontsize=10)
        figures.append(to_png(fig))
    return figures
