"""The library entry points: one scene, many scenes (locally or on Dask), in-memory arrays."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from rsseg.errors import RsSegError
from rsseg.infer.options import PredictOptions, SceneResult, ScenesFailed
from rsseg.infer.reader import RasterSource
from rsseg.infer.stream import predict_array, predict_scene
from rsseg.io import check_input, ensure_writable_dir
from rsseg.trained.predictor import Predictor

log = logging.getLogger(__name__)
Progress = Callable[[int], None]


def border_corrected_predict(
    predictor: Predictor,
    image: np.ndarray,
    *,
    progress: Progress | None = None,
    mode: str = "reference",
    **options: object,
) -> np.ndarray:
    """Raw (C_file, H, W) image -> (H, W) uint8 class indices (Border Correction in memory);
    ``options`` override the predictor's ``defaults`` (``rsseg.config.infer.InferConfig``)."""
    opts = PredictOptions.build(predictor, mode=mode, **options)
    return predict_array(predictor, image, options=opts, progress=progress)


def predict_file(
    predictor: Predictor,
    input_path: Path,
    out_dir: Path,
    *,
    progress: Progress | None = None,
    options: PredictOptions | None = None,
    **overrides: object,
) -> dict[str, Path]:
    """Predict one scene; returns its output paths (classes, color, blend, areas[, probabilities]).
    ``options`` (default: the predictor's ``defaults``) with ``overrides`` (``InferConfig`` fields)."""
    opts = PredictOptions.build(predictor, options, **overrides)
    out_dir = ensure_writable_dir(Path(out_dir))
    result = predict_scene(predictor, check_input(input_path), out_dir, opts, progress)
    for w in result.warnings:
        log.warning(w)
    return dict(result.paths)


def _check_inputs(inputs: list[Path]) -> list[Path]:
    inputs = [check_input(Path(p)) for p in inputs]
    seen: dict[str, Path] = {}
    for p in inputs:
        if p.stem in seen:
            raise RsSegError(
                f"inputs {seen[p.stem]} and {p} share the name '{p.stem}'; "
                "their outputs would overwrite each other"
            )
        seen[p.stem] = p
    return inputs


def count_scene_windows(path: Path, predictor: Predictor, options: PredictOptions) -> int:
    """Windows of one scene, from its header only (0 when it cannot be read: it will fail)."""
    try:
        with RasterSource(path) as src:
            return options.grid(src.info.height, src.info.width).windows
    except RsSegError:
        return 0


def predict_files(
    model: Predictor | str | Path,
    inputs: list[Path],
    out_dir: Path,
    *,
    options: PredictOptions | None = None,
    workers: int = 0,
    scheduler: str | None = None,
    threads: int | None = None,
    engine: str = "auto",
    show_progress: bool = True,
    raise_on_error: bool = True,
    **overrides: object,
) -> list[SceneResult]:
    """Predict several scenes: in this process, or on a Dask cluster (``workers`` local
    processes or an existing ``scheduler``). A scene that fails is reported and the others
    complete; then ``ScenesFailed`` is raised unless ``raise_on_error`` is False.

    ``model`` is a ``Predictor`` or a path loaded with ``engine`` (auto, torch, onnx); Dask
    workers load a path once each. ``options`` (default: the model's ``defaults``, its
    checkpoint's ``infer`` section) with ``overrides`` (``InferConfig`` fields; None = not
    given) make the run's ``PredictOptions``, built once here for every scene.
    ``threads``: torch (or onnxruntime) threads per process (default: all cores here, cores /
    workers on a LocalCluster). oneDNN rounds differently with different thread counts, so
    outputs are byte-identical between runs with the same ``threads``.
    """
    if workers < 0 or (threads is not None and threads < 1):
        raise RsSegError(f"workers must be >= 0 and threads >= 1, got {workers} and {threads}")
    inputs = _check_inputs(inputs)
    distributed = workers > 0 or scheduler is not None
    predictor = _local_predictor(model, distributed, engine, threads)
    opts = PredictOptions.build(predictor, options, **overrides)  # Dask workers get these, checked here
    out_dir = ensure_writable_dir(Path(out_dir))
    totals = [count_scene_windows(p, predictor, opts) for p in inputs]
    with _progress_display(show_progress, sum(totals), len(inputs)) as report:
        if distributed:
            run_on_dask = _dask_runner()
            results = run_on_dask(model, inputs, out_dir, opts, workers=workers, scheduler=scheduler,
                                  threads=threads, engine=engine, report=report)
        else:
            with _torch_threads(predictor, threads):
                results = [_run_one(predictor, p, out_dir, opts, report) for p in inputs]
    for r in results:
        for w in r.warnings:
            log.warning(w)
    if raise_on_error and any(not r.ok for r in results):
        raise ScenesFailed(results)
    return results


def _local_predictor(model: Predictor | str | Path, distributed: bool, engine: str,
                     threads: int | None = None) -> Predictor:
    """The predictor used for checks (and the local run): loaded here from a path."""
    if isinstance(model, Predictor):
        return model
    from rsseg.infer.loading import load_model  # lazy: loading a model imports torch or onnxruntime

    return load_model(Path(model), device="cpu" if distributed else None, engine=engine, threads=threads)


@contextmanager
def _torch_threads(predictor: Predictor, threads: int | None) -> Iterator[None]:
    """torch's thread count for the run (a numpy model, e.g. onnxruntime, got its threads
    when it was loaded, and torch is not imported for it)."""
    if predictor.numpy_native:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _dask_runner():
    try:
        from rsseg.infer.dask_runner import run_on_dask  # lazy: Dask only for --workers and --scheduler
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RsSegError(f'--workers/--scheduler need Dask ({exc}): pip install "dask[distributed]"') from None
    return run_on_dask


def _run_one(predictor: Predictor, path: Path, out_dir: Path, opts: PredictOptions,
             report: Callable[[str, int, SceneResult | None], None]) -> SceneResult:
    try:
        result = predict_scene(predictor, path, out_dir, opts,
                               lambda done: report(path.name, done, None))
    except RsSegError as exc:
        result = SceneResult(path, error=str(exc))
    report(path.name, -1, result)
    return result


@contextmanager
def _progress_display(enabled: bool, total: int, scenes: int) -> Iterator[Callable[[str, int, SceneResult | None], None]]:
    """One bar over all windows of all scenes; ``report(name, done_in_scene, result)``,
    with ``result`` once a scene has ended."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    done: dict[str, int] = {}
    ended: list[str] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("windows"), TimeRemainingColumn(), disable=not enabled) as bar:
        task = bar.add_task(f"0/{scenes} scenes", total=max(total, 1))

        def report(name: str, count: int, result: SceneResult | None) -> None:
            if result is None:
                done[name] = count
            else:
                done[name] = result.windows if result.ok else done.get(name, 0)
                ended.append(name)
                if not result.ok:
                    bar.console.print(f"[red]failed:[/] {result.error}", highlight=False)
            bar.update(task, completed=sum(done.values()),
                       description=f"{len(ended)}/{scenes} scenes ({name})")

        yield report
