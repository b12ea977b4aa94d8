"""One scene, streamed: strips in, finished rows out to the GeoTIFFs, previews and areas.

Memory is one strip of input, one strip of predictions (and of each output head's values,
``rsseg.infer.heads``) and the fixed-size overviews, so it does not grow with the scene's
height (and grows with its width only through the strip).
The GeoTIFFs are written under temporary names and renamed when complete: a killed run
leaves nothing under the final names, and the next run removes its leftovers. Two runs
predicting the same scene into one folder both complete; the last to finish a file wins.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import rasterio

from rsseg.allocator import warm_allocator
from rsseg.classes import IGNORE_INDEX
from rsseg.errors import RsSegError
from rsseg.gis.areas import check_simplify
from rsseg.infer.areas import AreaCounter
from rsseg.infer.confidence import confidence_writer, style_paths, write_styles
from rsseg.infer.engine import WindowEngine
from rsseg.infer.gis_outputs import finish_gis, gis_paths
from rsseg.infer.heads import ConfidenceHead, DisagreementHead, WindowHead
from rsseg.infer.input_range import InputRangeCheck, range_check
from rsseg.infer.nodata import ValidPixels
from rsseg.infer.options import PredictOptions, SceneResult
from rsseg.infer.outputs import Preview, write_areas
from rsseg.infer.reader import ArraySource, RasterSource, StripReader
from rsseg.infer.stitch import Blender, HardStitcher
from rsseg.infer.windows import Grid
from rsseg.infer.writers import (
    RowWriter,
    class_writer,
    probability_writer,
    scale_probabilities,
    write_error,
)
from rsseg.io import atomic_path, ensure_writable_dir, remove_stale_temporaries
from rsseg.trained.predictor import Predictor

MiB = 2**20
log = logging.getLogger(__name__)
Emit = Callable[[int, int, np.ndarray, "np.ndarray | None", np.ndarray], None]
#: ``on_heads(y0, y1, classes, rows, raw)``: ``rows`` the finished rows of each head, by name
OnHeads = Callable[[int, int, np.ndarray, dict[str, np.ndarray], np.ndarray], None]


def option_heads(options: PredictOptions, scaled: bool = True) -> list[WindowHead]:
    """The heads ``rsseg predict``'s options ask for: confidence, and disagreement with TTA."""
    heads: list[WindowHead] = []
    if options.confidence:
        heads.append(ConfidenceHead(options.confidence, scaled))
    if options.disagreement and options.tta:
        heads.append(DisagreementHead(scaled))
    return heads


def run_grid(
    predictor: Predictor,
    source: RasterSource | ArraySource,
    grid: Grid,
    emit: Emit,
    *,
    options: PredictOptions,
    progress: Callable[[int], None] | None = None,
    pixels: ValidPixels | None = None,
    heads: Sequence[WindowHead] | None = None,
    on_heads: OnHeads | None = None,
    scaled: bool = True,
) -> InputRangeCheck | None:
    """Predict ``source`` on ``grid``; ``emit(y0, y1, classes, probs, raw)`` gets the
    finished rows ``[y0, y1)`` in order (nodata pixels, NaN/inf ones included, already set
    to 255 by ``pixels``; ``probs``, when asked for, as float or as
    ``writers.probability_bytes``). ``heads`` (default: ``option_heads``, the confidence/
    disagreement asked for, stored uint8 or float32 when not ``scaled``) are per-window
    outputs stitched alongside; ``on_heads(y0, y1, classes, rows, raw)``, called before
    ``emit``, gets their finished rows. Returns the check of the scene against an int8
    model's calibrated input range (None for other models)."""
    heads = option_heads(options, scaled) if heads is None else list(heads)
    engine = WindowEngine(predictor, grid, batch_size=options.batch_size, window=options.window, tta=options.tta)
    stitcher = (Blender(engine, options.blend, heads) if options.blend
                else HardStitcher(engine, probabilities=options.probabilities, scaled=scaled, heads=heads))
    reader = StripReader(source, grid)
    pixels = pixels if pixels is not None else ValidPixels(source.info, predictor.bands)
    check = range_check(predictor)
    with warm_allocator():  # large windows' activations are not page-faulted again each pass
        for i in range(grid.rows):
            strip = reader.strip(i)
            for y0, y1, classes, probs in stitcher.add(i, strip):
                raw = strip.scene_rows(y0, y1)
                valid = pixels.mask(raw)
                if valid is not None:
                    classes[~valid] = IGNORE_INDEX
                if check is not None:
                    check.add(raw, valid)
                if on_heads is not None:
                    rows = stitcher.head_rows
                    on_heads(y0, y1, classes, {h.name: h.finish(rows[h.name], classes) for h in heads}, raw)
                emit(y0, y1, classes, probs if options.probabilities else None, raw)
            if progress is not None:
                progress((i + 1) * grid.cols)
    return check


def output_paths(out_dir: Path, stem: str, options: PredictOptions) -> dict[str, Path]:
    names = {"classes": "classes.tif", "color": "color.png", "blend": "blend.png", "areas": "areas.json"}
    if options.probabilities:
        names["probabilities"] = "probabilities.tif"
    if options.confidence:
        names["confidence"] = "confidence.tif"
    if options.disagreement:
        names["disagreement"] = "disagreement.tif"
    paths = {k: out_dir / f"{stem}_{v}" for k, v in names.items()}
    paths |= style_paths(paths)
    return paths | gis_paths(paths, options)


def remove_leftovers(paths: dict[str, Path]) -> None:
    """Delete temporary files a killed run left beside these outputs; those of a run still
    writing the same scene into this folder are its own (``io.remove_stale_temporaries``)."""
    for final in paths.values():
        remove_stale_temporaries(final)


@contextlib.contextmanager
def _streamed(final: Path, open_writer: Callable[[Path], RowWriter]) -> Iterator[RowWriter]:
    """A writer on a temporary file that becomes ``final`` only when the body succeeds."""
    try:
        with atomic_path(final) as tmp:
            writer = open_writer(tmp)
            try:
                yield writer
            except BaseException:
                writer.abort()
                raise
            writer.close()
    except OSError as exc:
        raise write_error(final, exc) from exc


def gdal_cache_bytes(source: RasterSource) -> int:
    """GDAL's block cache for one scene: two rows of input blocks (rows are read once, but a
    block row is shared by two strips) plus room for the output tiles. GDAL's default, 5 %
    of RAM, fills up with blocks of a big scene and made peak memory grow with it."""
    block_rows = source.block_height * source.info.width * source.info.count
    return int(min(512 * MiB, 2 * block_rows * np.dtype(source.info.dtype).itemsize + 16 * MiB))


def predict_scene(
    predictor: Predictor,
    input_path: Path,
    out_dir: Path,
    options: PredictOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> SceneResult:
    """Predict one file into ``out_dir``; errors are ``RsSegError`` naming the file."""
    options = options or PredictOptions.build(predictor)
    input_path = Path(input_path)
    paths = output_paths(Path(out_dir), input_path.stem, options)
    if options.skip_existing and all(p.exists() for p in paths.values()):
        return SceneResult(input_path, paths, skipped=True)
    start = time.perf_counter()
    predictor = options.configure(predictor)
    try:
        with RasterSource(input_path) as source, rasterio.Env(GDAL_CACHEMAX=gdal_cache_bytes(source)):
            result = _predict_source(predictor, source, paths, options, progress)
    except RsSegError as exc:
        msg = str(exc)
        raise RsSegError(msg if str(input_path) in msg or "cannot write" in msg else f"{input_path}: {msg}") from exc
    result.seconds = time.perf_counter() - start
    return result


def _predict_source(predictor: Predictor, source: RasterSource, paths: dict[str, Path],
                    options: PredictOptions, progress: Callable[[int], None] | None) -> SceneResult:
    info = source.info
    predictor.check_bands(info.count, str(source.path))
    if options.vector:  # the input's grid is the class map's: refuse before the model runs
        check_simplify(options.simplify, info.transform, source.path)
    grid = options.grid(info.height, info.width)
    result = SceneResult(source.path, paths, windows=grid.windows)
    if not info.georeferenced:
        result.warnings.append(
            f"{source.path} has no georeferencing (no CRS, transform or GCPs): "
            "its class map is a plain image in pixel coordinates and areas are in pixels only"
        )
    pixels = ValidPixels(info, predictor.bands)
    ensure_writable_dir(paths["classes"].parent)
    remove_leftovers(paths)
    preview, areas = Preview(info, options.preview_max), AreaCounter(info, predictor.classes.num_classes)
    tags = options.tags(predictor.precision)
    with contextlib.ExitStack() as stack:
        cls_out = stack.enter_context(_streamed(
            paths["classes"],
            lambda t: class_writer(t, paths["classes"], info, predictor.classes, tags, options.overviews)))
        prob_out = None
        if options.probabilities:
            prob_out = stack.enter_context(_streamed(
                paths["probabilities"],
                lambda t: probability_writer(t, paths["probabilities"], info, predictor.classes, options.overviews)))

        extra_out = {k: stack.enter_context(_streamed(paths[k], lambda t, k=k: confidence_writer(
            t, paths[k], info, options.confidence if k == "confidence" else k, options.overviews)))
            for k in ("confidence", "disagreement") if k in paths}

        def write_extras(y0: int, y1: int, classes: np.ndarray, rows: dict, raw: np.ndarray) -> None:
            for k, out in extra_out.items():
                out.write(rows[k][None])

        def emit(y0: int, y1: int, classes: np.ndarray, probs: np.ndarray | None, raw: np.ndarray) -> None:
            cls_out.write(classes[None])
            if prob_out is not None:
                prob_out.write(scale_probabilities(probs, classes))
            preview.add(y0, classes, raw)
            areas.add(y0, classes)

        check = run_grid(predictor, source, grid, emit, options=options, progress=progress, pixels=pixels,
                         on_heads=write_extras if extra_out else None)
    result.warnings += pixels.warnings(source.path)
    if check is not None and (warning := check.warning(source.path)):
        result.warnings.append(warning)
    preview.write(predictor.classes, paths["color"], paths["blend"])
    write_styles(paths, predictor.classes)
    extra = {"mode": options.mode, "window": [grid.win_y, grid.win_x], "keep": [grid.keep_y, grid.keep_x],
             "blend": options.blend, "tta": options.tta}
    write_areas(paths["areas"], info, areas.summary(predictor.classes), extra)
    finish_gis(paths, predictor, options, source.path)
    return result


def predict_array(
    predictor: Predictor,
    image: np.ndarray,
    *,
    options: PredictOptions | None = None,
    nodata: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """In-memory (C, H, W) raw image -> (H, W) uint8 classes, by the same streaming code."""
    options = options or PredictOptions.build(predictor)
    predictor = options.configure(predictor)
    source = ArraySource(image, nodata)
    predictor.check_bands(image.shape[0])
    _, h, w = image.shape
    grid = options.grid(h, w)
    out = np.empty((h, w), dtype=np.uint8)

    def emit(y0: int, y1: int, classes: np.ndarray, probs: np.ndarray | None, raw: np.ndarray) -> None:
        out[y0:y1] = classes

    pixels = ValidPixels(source.info, predictor.bands)
    check = run_grid(predictor, source, grid, emit, options=options, progress=progress, pixels=pixels)
    for warning in pixels.warnings(None):
        log.warning(warning)
    if check is not None and (warning := check.warning(None)):
        log.warning(warning)
    return out
