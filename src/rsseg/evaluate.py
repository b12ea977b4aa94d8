"""Evaluation of a checkpoint on a whole split, scene by scene.

Each scene is predicted exactly as ``rsseg predict`` would with its defaults (the
checkpoint's ``infer.mode``, window/keep and precision, over the full scene), so the metrics
describe the maps users get, not isolated chips. Counts go into one exact integer confusion
matrix for the whole split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from rsseg.config import Config
from rsseg.data.datasets.tables import metric_classes
from rsseg.data.rasters import open_raster
from rsseg.data.sources import get_source
from rsseg.errors import RsSegError
from rsseg.infer import PredictOptions, read_image
from rsseg.infer.reader import ArraySource
from rsseg.infer.stream import run_grid
from rsseg.io import atomic_path, ensure_writable_dir
from rsseg.metrics import ConfusionMatrix, compute_metrics, save_metrics
from rsseg.plots import plot_confusion_matrix
from rsseg.reliability import ReliabilityBins
from rsseg.report import record_timing, try_write_report
from rsseg.report.figures import reliability_png
from rsseg.trained.checkpoint import load_predictor


@dataclass
class EvalResult:
    metrics: dict
    out_dir: Path
    metrics_path: Path
    confusion_png: Path
    seconds: float
    pixels: int
    mode: str = "reference"
    tta: bool = False


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint belongs to (``RUN/checkpoints/x.ckpt`` -> ``RUN``)."""
    parent = Path(checkpoint).resolve().parent
    return parent.parent if parent.name == "checkpoints" else parent


def evaluate(
    checkpoint: Path,
    *,
    config: Config | None = None,
    split: str = "test",
    out: Path | None = None,
    progress: bool = True,
    mode: str | None = None,
    tta: bool | None = None,
) -> EvalResult:
    """Predict every scene of ``split`` and write ``metrics.json`` + a confusion-matrix PNG.

    ``mode``, ``tta`` (average the 8 D4 views): None = the checkpoint's (or ``config``'s)
    ``infer`` section, as ``rsseg predict``; the window, keep, blending and precision are always
    the section's, so the metrics are those of the map ``rsseg predict`` makes."""
    checkpoint = Path(checkpoint)
    predictor = load_predictor(checkpoint, config=config)
    cfg = predictor.config
    # an unknown mode fails here, before any data is read; the max probability feeds the
    # reliability bins, and the outputs evaluate does not write are off
    options = PredictOptions.build(predictor, mode=mode, tta=tta, confidence="max", probabilities=False,
                                   disagreement=False)
    out_dir = ensure_writable_dir(Path(out) if out else run_dir_of(checkpoint) / f"eval-{split}")

    source = get_source(cfg.data)
    source.prepare(progress=progress)
    data_classes = source.classes()
    if data_classes.names != predictor.classes.names:
        raise RsSegError(
            f"{checkpoint} was trained on classes {list(predictor.classes.names)} but the data in "
            f"{cfg.data.root} has {list(data_classes.names)}"
        )
    classes = metric_classes(predictor.classes, cfg.data)
    scenes = source.scenes(split)
    _check_scenes(predictor, options, scenes)  # before any scene is predicted

    confusion = ConfusionMatrix(classes.num_classes)
    reliability = ReliabilityBins()
    start = time.perf_counter()
    pixels = 0
    with Progress(
        TextColumn("evaluate {task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), disable=not progress,
    ) as bar:
        for scene in scenes:
            image, _ = read_image(scene.image)
            grid = options.grid(*image.shape[1:])
            task = bar.add_task(scene.image.name, total=grid.windows)
            mask = _read_mask(source, scene, image.shape[1:])
            _predict_rows(predictor, options, grid, image, mask, confusion, reliability,
                          progress=lambda done, t=task: bar.update(t, completed=done))
            pixels += int(mask.size)
    seconds = time.perf_counter() - start

    metrics = compute_metrics(confusion.matrix, classes)
    metrics["calibration"] = reliability.to_dict()
    metrics["ece"], metrics["mce"] = metrics["calibration"]["ece"], metrics["calibration"]["mce"]
    metrics["mode"], metrics["tta"] = options.mode, options.tta  # how the maps were made
    metrics_path = save_metrics(metrics, out_dir / "metrics.json")
    _write_reliability(metrics["calibration"], out_dir / "reliability.png")
    png = plot_confusion_matrix(
        confusion.matrix, classes, out_dir / "confusion_matrix.png",
        title=f"{split}: mIoU {metrics['miou']:.3f}" if metrics["miou"] is not None else split,
    )
    if out is None:  # the evaluation belongs to the run: refresh its report
        record_timing(run_dir_of(checkpoint), **{f"evaluate {split}": seconds})
        try_write_report(run_dir_of(checkpoint))
    return EvalResult(metrics, out_dir, metrics_path, png, seconds, pixels, options.mode, options.tta)


def _predict_rows(predictor, options: PredictOptions, grid, image: np.ndarray, mask: np.ndarray,
                  confusion: ConfusionMatrix, reliability: ReliabilityBins, progress) -> None:
    """Predict a scene as ``rsseg predict`` does with ``options``, counting its rows as they
    come: the confusion matrix and the reliability bins of the max probability (streamed)."""
    p = options.configure(predictor)
    p.check_bands(image.shape[0])
    k = predictor.classes.num_classes

    def count(y0, y1, classes, rows, raw) -> None:
        confusion.update(classes, mask[y0:y1])
        reliability.add_rows(rows["confidence"], classes, mask[y0:y1], k)

    run_grid(p, ArraySource(image), grid, lambda *_: None, options=options, progress=progress,
             on_heads=count, scaled=False)


def _write_reliability(calibration: dict, path: Path) -> None:
    """The reliability diagram PNG beside metrics.json (shown in the run report)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(reliability_png(calibration))


def _check_scenes(predictor, options: PredictOptions, scenes) -> None:
    """Every scene must hold the bands the checkpoint was trained on and fit the mode (a
    ``whole`` pass has a size limit); say so up front, naming the file."""
    for scene in scenes:
        with open_raster(scene.image) as src:
            count, h, w = src.count, src.height, src.width
        predictor.check_bands(count, scene.image)
        try:
            options.grid(h, w)
        except RsSegError as exc:
            raise RsSegError(f"{scene.image}: {exc}") from None


def _read_mask(source, scene, shape: tuple[int, ...]) -> np.ndarray:
    """The scene's mask decoded by its dataset's codec (class indices, 255 = no label)."""
    if scene.mask is None:
        raise RsSegError("evaluation needs masks, but a scene of this split has none")
    mask = source.read_mask(scene)
    if mask.shape != shape:
        raise RsSegError(f"mask {scene.mask} is {mask.shape[1]}x{mask.shape[0]}, image is {shape[1]}x{shape[0]}")
    return mask
