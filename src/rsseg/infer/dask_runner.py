"""Many scenes on a Dask distributed cluster: one scene per task, one model per worker.

A worker plugin loads the model once when each worker starts (from the checkpoint path,
which every worker must be able to read, or from a pickled ``Predictor``) and pins torch's
(or onnxruntime's) thread count so ``N`` workers share the cores instead of oversubscribing
them. Workers write their outputs straight into ``out_dir`` (a shared file system on a real
cluster) with the same code as a local run, so the files are byte-identical. Progress comes
back as Dask events, so the client shows one bar over all scenes.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import distributed
from distributed.diagnostics.plugin import WorkerPlugin

from rsseg.errors import RsSegError
from rsseg.infer.loading import load_model
from rsseg.infer.options import PredictOptions, SceneResult
from rsseg.infer.stream import predict_scene
from rsseg.trained.predictor import Predictor

Report = Callable[[str, int, SceneResult | None], None]


class PredictorPlugin(WorkerPlugin):
    """Worker plugin: the model, loaded once per worker (``setup`` runs as it starts)."""

    def __init__(self, model: Predictor | str, threads: int | None, engine: str = "auto") -> None:
        self.model, self.threads, self.engine = model, threads, engine
        self.predictor: Predictor | None = None

    def setup(self, worker: object) -> None:
        m = self.model
        self.predictor = p = m if isinstance(m, Predictor) else load_model(Path(m), engine=self.engine,
                                                                            threads=self.threads)
        if self.threads and not p.numpy_native:  # an onnxruntime worker never imports torch
            import torch

            torch.set_num_threads(self.threads)

    def teardown(self, worker: object) -> None:
        self.predictor = None


def _predict_task(plugin: str, path: str, out_dir: str, options: PredictOptions, topic: str) -> SceneResult:
    """Runs on a worker: one scene with the worker's model; errors become the result."""
    worker = distributed.get_worker()
    predictor = worker.plugins[plugin].predictor
    name = Path(path).name

    def progress(done: int) -> None:
        worker.log_event(topic, [name, done])

    try:
        return predict_scene(predictor, Path(path), Path(out_dir), options, progress)
    except RsSegError as exc:
        return SceneResult(Path(path), error=str(exc))


def dask_client(workers: int, scheduler: str | None):
    """A client on ``scheduler``, or on a new LocalCluster of ``workers`` processes."""
    d = distributed
    if scheduler is not None:
        try:
            return d.Client(scheduler, timeout="30s"), None
        except (OSError, TimeoutError) as exc:
            raise RsSegError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    cluster = d.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                             dashboard_address=None, silence_logs=logging.ERROR)
    return d.Client(cluster), cluster


def run_on_dask(model: Predictor | str | Path, inputs: list[Path], out_dir: Path,
                options: PredictOptions, *, workers: int, scheduler: str | None,
                threads: int | None = None, engine: str = "auto", report: Report) -> list[SceneResult]:
    """Every input as one task; results in input order, a failed scene as an error result."""
    d = distributed
    client, cluster = dask_client(workers, scheduler)
    token = uuid.uuid4().hex[:8]
    plugin, topic = f"rsseg-predictor-{token}", f"rsseg-progress-{token}"
    if threads is None and scheduler is None:  # share this machine's cores, no oversubscription
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    source = model if isinstance(model, Predictor) else str(Path(model).resolve())
    try:
        client.register_plugin(PredictorPlugin(source, threads, engine), name=plugin)
        client.subscribe_topic(topic, lambda event: report(event[1][0], event[1][1], None))
        futures = {
            client.submit(_predict_task, plugin, str(p.resolve()), str(out_dir.resolve()), options,
                          topic, key=f"rsseg-predict-{token}-{i}", pure=False): p
            for i, p in enumerate(inputs)
        }
        results: dict[Path, SceneResult] = {}
        for fut in d.as_completed(futures):
            path = futures[fut]
            try:
                results[path] = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died or the task crashed: report, go on
                results[path] = SceneResult(path, error=f"{path}: prediction failed on a worker: {exc!r}")
            report(path.name, -1, results[path])
        return [_local_paths(results[p], p, out_dir) for p in inputs]
    finally:
        _close(client, cluster, plugin, topic)


def _local_paths(result: SceneResult, path: Path, out_dir: Path) -> SceneResult:
    """The caller's spelling of the paths, not the worker's resolved ones."""
    result.input = path
    result.paths = {k: out_dir / v.name for k, v in result.paths.items()}
    return result


def _close(client, cluster, plugin: str, topic: str) -> None:
    try:
        client.unsubscribe_topic(topic)
        if cluster is None:  # a shared cluster keeps running: just drop our model
            client.unregister_worker_plugin(plugin)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
