"""Activation maps of the last layer (seed 000 Fig. 9): where the network fires per class.

``explain_image`` runs the model over a scene with ``rsseg predict``'s streaming loop
(``rsseg.infer.stream.run_grid``: same windows, same kept centres, same nodata pixels) and
keeps, through a ``LayerHead`` (``rsseg.infer.heads``), each class's channel of the network's
last layer: the raw ``logits`` or the softmax ``probs``. Maps are collected as a
nearest-neighbour overview of at most ``max_side`` px a side while the rows stream past
(memory: one strip of maps, as ``run_grid`` holds, and ``classes x max_side²`` floats,
whatever the scene's height), so the argmax over the saved maps is the predicted class map
of the same overview pixels.

Writes into ``out_dir``: ``act_KK_NAME.png`` per class (a perceptual colour map),
``activations.png`` (input, predicted classes and every map with a colour bar),
``activations.npy`` (the float maps, NaN on nodata) and ``activations.json`` (files, the
colour range of each PNG, and min/max/mean of each map over all valid full-size pixels).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.errors import RsSegError
from rsseg.infer.heads import LayerHead
from rsseg.infer.loading import load_model
from rsseg.infer.options import PredictOptions
from rsseg.infer.outputs import Preview, save_png, to_rgb8
from rsseg.infer.reader import RasterSource
from rsseg.infer.stream import gdal_cache_bytes, run_grid
from rsseg.infer.writers import write_error
from rsseg.io import atomic_path, atomic_write_text, ensure_writable_dir
from rsseg.trained.predictor import Predictor

LAYERS = ("logits", "probs")
DEFAULT_MAX_SIDE = 1024
Progress = Callable[[int], None]


@dataclass
class ExplainResult:
    """Overview-sized arrays (``maps``: (K, h, w) float32, NaN on nodata; ``classes``: the
    predicted (h, w) uint8 map, 255 on nodata; ``image``: (h, w, 3) uint8 display bands),
    the written ``paths`` (``overview``, ``json``, ``npy``, ``classes``: one PNG per class)
    and per-class ``stats`` (as in ``activations.json``)."""

    input: Path
    out_dir: Path
    layer: str
    step: int
    maps: np.ndarray
    classes: np.ndarray
    image: np.ndarray
    stats: list[dict] = field(default_factory=list)
    paths: dict[str, Path | list[Path]] = field(default_factory=dict)


class _Collector:
    """The overview of the maps (every ``step``-th row and column, as ``Preview`` does with
    the classes) and running min/max/sum per class over every valid full-size pixel."""

    def __init__(self, preview: Preview, k: int) -> None:
        self.preview, self.step = preview, preview.step
        self.maps = np.full((k,) + preview.classes.shape, np.nan, dtype=np.float32)
        self.lo, self.hi = np.full(k, np.inf), np.full(k, -np.inf)
        self.sum, self.count, self.counts = np.zeros(k), 0, np.zeros(k, dtype=np.int64)

    def add(self, y0: int, y1: int, classes: np.ndarray, rows: dict[str, np.ndarray], raw: np.ndarray) -> None:
        """``run_grid``'s ``on_heads``: the rows of the one ``LayerHead``."""
        (maps,) = rows.values()
        self.preview.add(y0, classes, raw)
        valid = classes != IGNORE_INDEX
        if valid.any():
            vals = maps[:, valid].astype(np.float64)
            self.lo = np.minimum(self.lo, vals.min(axis=1))
            self.hi = np.maximum(self.hi, vals.max(axis=1))
            self.sum += vals.sum(axis=1)
            self.count += int(valid.sum())
            self.counts += np.bincount(classes[valid], minlength=len(self.counts))[: len(self.counts)]
        s, first = self.step, -y0 % self.step
        if first >= classes.shape[0]:
            return
        small, r0 = np.where(valid, maps, np.nan)[:, first::s, ::s], (y0 + first) // s
        self.maps[:, r0 : r0 + small.shape[1]] = small


def explain_image(
    checkpoint: Predictor | str | Path,
    image: str | Path,
    out_dir: str | Path,
    *,
    layer: str = "logits",
    max_side: int = DEFAULT_MAX_SIDE,
    mode: str = "reference",
    tta: bool = False,
    shared_scale: bool = False,
    cmap: str = "magma",
    engine: str = "auto",
    progress: bool | Progress = True,
) -> ExplainResult:
    """Save the last-layer activation maps of ``image`` under ``out_dir``.

    ``checkpoint``: a ``.ckpt``, an exported ``.onnx`` (``engine``: auto/torch/onnx) or a
    ``Predictor``. ``layer``: ``logits`` (raw scores) or ``probs`` (softmax). ``mode``/
    ``tta``: as in ``rsseg predict`` (TTA averages probabilities, so it needs ``probs``).
    Each class PNG spans that map's own range (probabilities: 0-1); ``shared_scale`` gives
    all logit maps one range. ``progress``: a bar, or a callable given windows done.
    """
    from matplotlib import colormaps

    if layer not in LAYERS:
        raise RsSegError(f"unknown layer '{layer}'; choose one of {', '.join(LAYERS)}")
    if max_side < 1:
        raise RsSegError(f"max_side must be positive, got {max_side}")
    if tta and layer == "logits":
        raise RsSegError("TTA averages probabilities: use it with layer 'probs'")
    if cmap not in colormaps:
        raise RsSegError(f"unknown colour map '{cmap}' (e.g. magma, viridis, inferno)")
    image, out_dir = Path(image), Path(out_dir)
    RasterSource(image).close()  # input errors (missing, unreadable) before loading a model
    predictor = _predictor(checkpoint, engine)
    options = PredictOptions.build(predictor, mode=mode, tta=tta, preview_max=max_side)
    ensure_writable_dir(out_dir)
    try:
        with RasterSource(image) as source, rasterio.Env(GDAL_CACHEMAX=gdal_cache_bytes(source)):
            predictor.check_bands(source.info.count, str(image))
            col = _run(options.configure(predictor), source, options, layer, progress)
    except RsSegError as exc:
        msg = str(exc)
        raise RsSegError(msg if str(image) in msg else f"{image}: {msg}") from exc
    result = ExplainResult(image, out_dir, layer, col.step, col.maps, col.preview.classes,
                           to_rgb8(col.preview.image, col.preview.classes != IGNORE_INDEX))
    model = None if isinstance(checkpoint, Predictor) else Path(checkpoint).name
    _write(result, col, predictor.classes, cmap=cmap, shared=shared_scale,
           extra={"checkpoint": model, "mode": mode, "tta": tta})
    return result


def _predictor(checkpoint: Predictor | str | Path, engine: str) -> Predictor:
    if isinstance(checkpoint, Predictor):
        return checkpoint
    return load_model(Path(checkpoint), engine=engine)


def _run(predictor: Predictor, source: RasterSource, options: PredictOptions, layer: str,
         progress: bool | Progress) -> _Collector:
    """``rsseg.infer.stream.run_grid`` with the last layer as its one head, collected."""
    info = source.info
    grid = options.grid(info.height, info.width)
    col = _Collector(Preview(info, options.preview_max), predictor.classes.num_classes)
    with _progress_bar(progress, grid.windows, source.path.name) as report:
        run_grid(predictor, source, grid, lambda *_: None, options=options, progress=report,
                 heads=[LayerHead(layer)], on_heads=col.add)
    return col


@contextlib.contextmanager
def _progress_bar(progress: bool | Progress, total: int, name: str) -> Iterator[Progress]:
    """A callable given the windows done: the caller's own, or a rich bar (off when False)."""
    if callable(progress):
        yield progress
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
    from rich.progress import Progress as Bar

    with Bar(TextColumn(f"explain {name}"), BarColumn(), MofNCompleteColumn(), TextColumn("windows"),
             disable=not progress) as bar:
        task = bar.add_task("", total=max(total, 1))
        yield lambda done: bar.update(task, completed=done)


def file_stem(index: int, name: str) -> str:
    """``act_03_low_vegetation``: the index keeps names unique and sorted."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "class"
    return f"act_{index:02d}_{slug}"


def _label(classes: ClassTable, k: int) -> str:
    return classes.names[k] + (" (ignored)" if k in classes.ignore else "")


def _write(result: ExplainResult, col: _Collector, classes: ClassTable, *, cmap: str, shared: bool,
           extra: dict) -> None:
    from matplotlib import colormaps

    out, maps, k = result.out_dir, result.maps, classes.num_classes
    valid = result.classes != IGNORE_INDEX
    ranges = [(0.0, 1.0) if result.layer == "probs" else (float(col.lo[c]), float(col.hi[c])) for c in range(k)]
    if shared and result.layer == "logits" and col.count:
        ranges = [(float(col.lo.min()), float(col.hi.max()))] * k
    ranges = [(lo, hi) if math.isfinite(lo) else (0.0, 1.0) for lo, hi in ranges]
    files = []
    for c in range(k):
        lo, hi = ranges[c]
        scaled = np.clip((maps[c] - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(maps[c])
        rgba = colormaps[cmap](np.nan_to_num(scaled), bytes=True)
        rgba[..., 3] = np.where(valid, 255, 0)  # nodata transparent
        files.append(out / f"{file_stem(c, classes.names[c])}.png")
        save_png(rgba if not valid.all() else rgba[..., :3], files[-1])
    npy = out / "activations.npy"
    try:
        with atomic_path(npy) as tmp, open(tmp, "wb") as fh:
            np.save(fh, maps)
    except OSError as exc:
        raise write_error(npy, exc) from exc
    overview = out / "activations.png"
    _figure(result, classes, ranges, cmap, overview)
    result.stats = [
        {"index": c, "name": classes.names[c], "ignored": c in classes.ignore, "file": files[c].name,
         "min": float(col.lo[c]) if col.count else None, "max": float(col.hi[c]) if col.count else None,
         "mean": float(col.sum[c] / col.count) if col.count else None,
         "predicted_fraction": float(col.counts[c] / col.count) if col.count else 0.0,
         "png_range": list(ranges[c])}
        for c in range(k)
    ]
    doc = {"input": result.input.name, "layer": result.layer, "overview_step": result.step,
           "overview_size": list(maps.shape[1:]), "colormap": cmap, **extra, "figure": overview.name,
           "maps": npy.name, "valid_pixels": col.count, "classes": result.stats}
    json_path = out / "activations.json"
    try:
        atomic_write_text(json_path, json.dumps(doc, indent=2) + "\n")
    except OSError as exc:
        raise write_error(json_path, exc) from exc
    result.paths = {"overview": overview, "json": json_path, "npy": npy, "classes": files}


def _figure(result: ExplainResult, classes: ClassTable, ranges: list[tuple[float, float]], cmap: str,
            path: Path) -> None:
    """Input, predicted classes and every class map with its colour bar, on one grid."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    k = classes.num_classes
    panels = k + 2
    ncols = min(4, math.ceil(math.sqrt(panels)))
    nrows = math.ceil(panels / ncols)
    h, w = result.classes.shape
    side = 3.2  # a panel's width; its image is ~0.8 in narrower (colour bar)
    panel_h = min(2 * side, max(side / 2, (side - 0.8) * h / w)) + 0.4
    fig = Figure(figsize=(ncols * side + 0.4, nrows * panel_h + 1.0), dpi=110, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    axes[0].imshow(result.image, interpolation="nearest")
    axes[0].set_title(f"input: {result.input.name}", fontsize=9)
    axes[1].imshow(classes.colorize(result.classes), interpolation="nearest")
    axes[1].set_title("predicted classes", fontsize=9)
    colour_map = colormaps[cmap].with_extremes(bad=(0, 0, 0, 0))
    label = "probability" if result.layer == "probs" else "logit"
    for c in range(k):
        ax = axes[c + 2]
        lo, hi = ranges[c]
        im = ax.imshow(np.ma.masked_invalid(result.maps[c]), cmap=colour_map, vmin=lo, vmax=hi if hi > lo else lo + 1,
                       interpolation="nearest")
        ax.set_title(f"{c}: {_label(classes, c)}", fontsize=9)
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        bar.ax.tick_params(labelsize=7)
        bar.set_label(label, fontsize=7)
    handles = [Patch(color=np.asarray(classes.colors[c]) / 255, label=_label(classes, c)) for c in range(k)]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(k, 6), fontsize=8, frameon=False)
    fig.suptitle(f"Last-layer activation maps ({label}s)", fontsize=11)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    except OSError as exc:
        raise write_error(path, exc) from exc
