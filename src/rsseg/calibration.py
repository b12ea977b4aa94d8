"""Calibration: the expected calibration error, streamed, and temperature scaling.

ECE uses 15 equal-width bins of the confidence (the max softmax probability) over valid
pixels: ``sum_b n_b / N * |accuracy_b - confidence_b|``; MCE is the largest such gap.
Only per-bin counts and sums are kept, so a split of any size costs 45 numbers.

``rsseg calibrate`` fits one temperature T on a split (minimum NLL of ``softmax(z / T)`` over
at most ``MAX_PIXELS`` uniformly sampled pixels) and stores it in a new checkpoint; the
predictor divides logits by T before the softmax, which leaves the argmax unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsseg.classes import IGNORE_INDEX
from rsseg.data.rasters import open_raster
from rsseg.data.sources import get_source
from rsseg.errors import RsSegError
from rsseg.evaluate import _read_mask
from rsseg.infer.engine import WindowEngine
from rsseg.infer.heads import LayerHead
from rsseg.infer.options import PredictOptions
from rsseg.infer.reader import ArraySource, StripReader, read_image
from rsseg.infer.stitch import HardStitcher
from rsseg.io import atomic_path
from rsseg.safe_load import read_lightning_checkpoint
from rsseg.trained.checkpoint import load_predictor
from rsseg.reliability import ece_of, fit_temperature

MAX_PIXELS = 2_000_000


@dataclass
class CalibrationResult:
    temperature: float
    ece_before: float
    ece_after: float
    pixels: int
    checkpoint: Path


def calibrate(checkpoint: Path, *, split: str = "val", out: Path | None = None, in_place: bool = False,
              max_pixels: int = MAX_PIXELS, seed: int = 0) -> CalibrationResult:
    """Fit T on ``split`` and write it into ``out`` (default ``<stem>-calibrated.ckpt``)."""
    import torch  # lazy: torch only when a checkpoint is written

    checkpoint = Path(checkpoint)
    target = (checkpoint if in_place else Path(out) if out
              else checkpoint.with_name(f"{checkpoint.stem}-calibrated.ckpt"))
    predictor = load_predictor(checkpoint)
    z, labels = sample_logits(predictor, checkpoint, split, max_pixels, seed)
    t = fit_temperature(z, labels)
    before = ece_of(z, labels, predictor.temperature)
    after = ece_of(z, labels, t)
    ckpt = read_lightning_checkpoint(checkpoint)
    ckpt["hyper_parameters"]["temperature"] = float(t)
    try:
        with atomic_path(target) as tmp:
            torch.save(ckpt, tmp)
    except OSError as exc:
        raise RsSegError(f"cannot write {target}: {exc.strerror or exc}") from None
    return CalibrationResult(t, before, after, len(labels), target)


def sample_logits(predictor, checkpoint: Path, split: str, max_pixels: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) float32 logits and (N,) labels of up to ``max_pixels`` labelled pixels of ``split``,
    each kept with the same probability (whole scenes, Border Correction, as ``predict``)."""
    cfg = predictor.config
    source = get_source(cfg.data)
    source.prepare(progress=False)
    scenes = source.scenes(split)
    if not scenes:
        raise RsSegError(f"{checkpoint}: the {split} split of {cfg.data.root} has no scenes to calibrate on")
    total = 0
    for scene in scenes:
        with open_raster(scene.image) as src:
            total += src.height * src.width
    rate = min(1.0, max_pixels / max(total, 1))
    rng = np.random.default_rng(seed)
    zs, ys = [], []
    k = predictor.classes.num_classes
    for scene in scenes:
        image, _ = read_image(scene.image)
        mask = _read_mask(source, scene, image.shape[1:])
        for y0, y1, classes, logits in logit_rows(predictor, image):
            m = mask[y0:y1]
            keep = (m != IGNORE_INDEX) & (m < k) & (classes != IGNORE_INDEX) & (rng.random(m.shape) < rate)
            zs.append(logits[:, keep].T.astype(np.float32))
            ys.append(m[keep].astype(np.int64))
    z, y = np.concatenate(zs), np.concatenate(ys)
    if len(y) == 0:
        raise RsSegError(f"{checkpoint}: no labelled pixels in the {split} split of {cfg.data.root} to calibrate on")
    if len(y) > max_pixels:
        pick = rng.choice(len(y), max_pixels, replace=False)
        z, y = z[pick], y[pick]
    return z, y


def logit_rows(predictor, image: np.ndarray):
    """(y0, y1, classes, (K, n, w) logits) rows of a scene, as ``predict`` stitches them."""
    options = PredictOptions.build(predictor, mode="reference")
    predictor.check_bands(image.shape[0], "the image")
    grid = options.grid(*image.shape[1:])
    engine = WindowEngine(predictor, grid, batch_size=options.batch_size, window=options.window)
    stitcher = HardStitcher(engine, heads=[LayerHead("logits")])
    reader = StripReader(ArraySource(image), grid)
    for i in range(grid.rows):
        for y0, y1, classes, _ in stitcher.add(i, reader.strip(i)):
            yield y0, y1, classes, stitcher.head_rows["logits"]
