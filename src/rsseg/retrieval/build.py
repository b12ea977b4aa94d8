"""Build a retrieval index from a checkpoint and scenes (seed 000 §5.2).

Each scene is predicted whole with Border Correction (or its ground-truth mask is read), cut
into ``tile`` x ``tile`` chips on a ``stride`` grid (partial chips at the right and bottom
edges are left out, as the seed's 224 px crops), and every chip with enough evaluated pixels
gets a signature, its geographic bounds and optional embeddings. Builds are resumable: each
finished scene is staged beside the index (``rsseg.retrieval.staging``) and a rerun of an
interrupted build predicts only the scenes not yet done.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rasterio.transform import Affine

from rsseg.classes import ClassTable
from rsseg.errors import RsSegError
from rsseg.infer import read_image
from rsseg.retrieval.embeddings import (
    EMBEDDING_KINDS,
    BackboneSpec,
    EmbeddingSpec,
    EncoderSpec,
    ViTSpec,
    kind_of,
    make_embedder,
    parse_embedding,
)
from rsseg.retrieval.index import (
    RetrievalIndex,
    atomic_dir,
    check_index_dest,
    write_index,
)
from rsseg.retrieval.scenes import (
    band_count,
    check_inputs,
    cut_chips,
    effective_classes,
    predict_scene,
    read_mask,
    write_mask,
)
from rsseg.retrieval.signatures import QUANTUM, SignatureSpace
from rsseg.retrieval.staging import SceneResult, Staging, file_stamp


@dataclasses.dataclass
class _Job:
    """What indexing one scene needs."""

    predictor: object
    classes: ClassTable
    space: SignatureSpace
    tile: int
    stride: int
    min_mass: float
    embedders: list
    staging: Staging


def _index_scene(job: _Job, key: str, sid: str, path: Path, mask_path: Path | None) -> SceneResult:
    """Predict (or read the mask of) one scene, cut its chips and stage the result."""
    image, profile = read_image(path)
    h, w = image.shape[1:]
    if mask_path is None:
        mask = predict_scene(job.predictor, image, profile.get("nodata"))
    else:
        mask = read_mask(mask_path, (h, w), job.classes)
    transform = profile.get("transform") or Affine.identity()
    crs = profile.get("crs")
    meta = {
        "id": sid, "path": str(path.resolve()), "mask": f"masks/{sid}.tif", "width": w,
        "height": h, "crs": crs.to_string() if crs is not None else None,
        "transform": list(transform)[:6],
    }
    tiles, hist, vectors = cut_chips(
        sid, image, mask, transform, job.tile, job.stride, job.space, job.min_mass, job.embedders
    )
    result = SceneResult(key, meta, tiles, hist, vectors)
    job.staging.save(result, lambda dst: write_mask(mask, profile, dst))
    return result


@dataclasses.dataclass(frozen=True)
class _JobSpec:
    """What a worker process needs to rebuild the job: paths and options only (picklable)."""

    checkpoint: str
    out: str
    staging_options: dict
    class_order: list | None
    tile: int
    stride: int
    min_mass: float
    embeddings: tuple  # EmbeddingSpec, in index order


def _staging_key(emb: EmbeddingSpec) -> object:
    """What of an embedding changes a scene's result (its weights file by path, size, mtime)."""
    if isinstance(emb, BackboneSpec):
        return "backbone"
    key = {**emb.to_dict(), "kind": kind_of(emb)}
    if isinstance(emb, ViTSpec):
        key = {**emb.to_dict(), "file": file_stamp(emb.weights)}
    elif isinstance(emb, EncoderSpec) and not emb.builtin:
        key["file"] = file_stamp(Path(emb.source))
    return key


def _make_job(spec: _JobSpec, predictor=None) -> _Job:
    """The job of ``spec``: loads the model unless ``predictor`` is given (the main process)."""
    if predictor is None:
        # lazy: the model registry, only when indexing with a checkpoint
        from rsseg.trained.checkpoint import load_predictor

        predictor = load_predictor(Path(spec.checkpoint))
    classes = effective_classes(predictor)
    space = SignatureSpace.of(classes, spec.class_order)
    rgb_bands = predictor.bands[:3] if predictor.bands and len(predictor.bands) >= 3 else None
    embedders = []
    for emb in spec.embeddings:
        kind = kind_of(emb)
        embedders.append((emb.method, make_embedder(kind, emb.to_dict(), predictor, rgb_bands),
                          EMBEDDING_KINDS[kind].batch(predictor)))
    staging = Staging(Path(spec.out), spec.staging_options)
    return _Job(predictor, classes, space, spec.tile, spec.stride, spec.min_mass, embedders, staging)


_WORKER_JOBS: dict[str, _Job] = {}  # one model per worker process and build (by repr of its spec)


def _index_task(spec: _JobSpec, threads: int, key: str, sid: str, path: str, mask: str | None) -> str:
    """Runs on a Dask worker: index one scene into the staging folder; returns its key."""
    job = _WORKER_JOBS.get(repr(spec))
    if job is None:
        import torch

        torch.set_num_threads(threads)
        _WORKER_JOBS.clear()
        job = _WORKER_JOBS[repr(spec)] = _make_job(spec)
    _index_scene(job, key, sid, Path(path), Path(mask) if mask else None)
    return key


def _index_on_dask(spec: _JobSpec, todo: list, workers: int, advance) -> None:
    """Index ``todo`` (key, id, scene, mask) on a LocalCluster of ``workers`` processes, one
    scene per task; each finished scene is staged at once, so a killed build loses only the
    scenes in flight."""
    import os

    import distributed  # lazy: Dask only for --workers

    from rsseg.infer.dask_runner import dask_client  # lazy: imports Dask

    client, cluster = dask_client(workers, None)
    threads = max(1, (os.cpu_count() or 1) // workers)
    try:
        futures = [client.submit(_index_task, spec, threads, key, sid, str(Path(path).resolve()),
                                 str(Path(mask).resolve()) if mask else None, pure=False)
                   for key, sid, path, mask in todo]
        errors = []
        for fut in distributed.as_completed(futures):
            try:
                fut.result()
            except RsSegError as exc:
                errors.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - a worker died or the task crashed: one line, go on
                errors.append(f"a scene failed on a worker: {exc!r}")
            advance()
        if errors:
            raise RsSegError(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def build_index(
    checkpoint: Path,
    scenes: Sequence[Path],
    tile: int = 224,
    out: Path = Path("index"),
    *,
    embeddings: Sequence[str | EmbeddingSpec] = (),
    stride: int | None = None,
    masks: Sequence[Path] | None = None,
    class_order: Sequence[str | int] | None = None,
    min_mass: float = 0.5,
    progress: bool = True,
    workers: int = 0,
) -> RetrievalIndex:
    """Predict ``scenes`` (or read their ground-truth ``masks``), cut chips and write an index.

    ``embeddings``: ``"backbone"``, ``"encoder=SOURCE"`` or specs (``BackboneSpec``,
    ``ViTSpec``, ``EncoderSpec``), stored under their ``method`` names. ``min_mass``: least
    share of a chip's pixels in evaluated classes for it to be indexed. ``class_order``: EMD
    ground order. An interrupted build resumes where it stopped when run again with the same
    arguments.
    ``workers``: index scenes on a local Dask cluster of that many processes (each loads the
    model once and stages its scenes; this process assembles the index from the staging).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    # lazy: the model registry, only when indexing with a checkpoint
    from rsseg.trained.checkpoint import load_predictor

    stride = stride or tile
    if tile <= 0 or stride <= 0:
        raise RsSegError(f"tile ({tile}) and stride ({stride}) must be positive")
    if not 0.0 <= min_mass <= 1.0:
        raise RsSegError(f"min_mass must be in 0..1, got {min_mass}")
    if workers < 0:
        raise RsSegError(f"workers must be >= 0, got {workers}")
    out = check_index_dest(Path(out))
    scene_paths = [Path(p) for p in scenes]
    mask_paths = [Path(m) for m in masks] if masks is not None else None
    ids = check_inputs(scene_paths, mask_paths)
    specs: list[EmbeddingSpec] = []
    for parsed in map(parse_embedding, embeddings):
        if parsed not in specs:  # a repeat is stored once
            specs.append(parsed)
    names = [e.method for e in specs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise RsSegError(f"two embeddings share the name '{dup}'; give each arch/pool or encoder file once")
    # the checkpoint's bands feed the backbone and encoders without documented RGB stats
    model_bands = any(isinstance(e, BackboneSpec) or (isinstance(e, EncoderSpec) and not e.reads_rgb)
                      for e in specs)
    rgb_readers = any(isinstance(e, ViTSpec) or (isinstance(e, EncoderSpec) and e.reads_rgb) for e in specs)

    predictor = load_predictor(Path(checkpoint))
    classes = effective_classes(predictor)
    space = SignatureSpace.of(classes, class_order)
    rgb_bands = predictor.bands[:3] if predictor.bands and len(predictor.bands) >= 3 else None
    for path in scene_paths:  # before any scene is predicted
        count = band_count(path)
        if mask_paths is None or model_bands:
            predictor.check_bands(count, path)
        elif rgb_readers and rgb_bands and max(rgb_bands) >= count:
            raise RsSegError(f"{path} has {count} band(s); RGB embeddings read bands {[b + 1 for b in rgb_bands]}")
    source = "prediction" if mask_paths is None else "ground-truth"
    staging_options = {
        "checkpoint": file_stamp(Path(checkpoint)), "classes": classes.to_dict(), "source": source,
        "tile": tile, "stride": stride, "min_mass": min_mass, "precision": predictor.precision,
        "embeddings": [_staging_key(e) for e in specs],
    }
    spec = _JobSpec(str(Path(checkpoint).resolve()), str(out.resolve()), staging_options,
                    list(class_order) if class_order is not None else None, tile, stride, min_mass,
                    tuple(specs))
    job = _make_job(spec, predictor)
    staging = job.staging
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    keys = {i: staging.scene_key(ids[i], scene_paths[i], mask_paths[i] if mask_paths else None) for i in order}
    results = {i: staging.load(keys[i]) for i in order}
    resumed = sum(r is not None for r in results.values())
    with Progress(
        TextColumn("index"), BarColumn(), MofNCompleteColumn(), TextColumn("scenes"),
        TimeRemainingColumn(), disable=not progress,
    ) as bar:
        if resumed:
            bar.console.print(f"resuming: {resumed} of {len(ids)} scene(s) already indexed in {staging.root}")
        task = bar.add_task("index", total=len(ids), completed=resumed)
        todo = [(keys[i], ids[i], scene_paths[i], mask_paths[i] if mask_paths else None)
                for i in order if results[i] is None]
        if workers and todo:
            _index_on_dask(spec, todo, workers, lambda: bar.advance(task))
            for i in order:  # the workers staged their scenes: read them back
                results[i] = results[i] or staging.load(keys[i])
            missing = [ids[i] for i in order if results[i] is None]
            if missing:
                raise RsSegError(f"{len(missing)} scene(s) were not indexed by the workers: {', '.join(missing)}")
        else:
            for i in order:
                if results[i] is None:
                    results[i] = _index_scene(job, keys[i], ids[i], scene_paths[i],
                                              mask_paths[i] if mask_paths else None)
                    bar.advance(task)
    done = [results[i] for i in order]
    tiles = [t for r in done for t in r.tiles]
    if not tiles:
        staging.clear()
        raise RsSegError(
            f"no chip to index: scenes smaller than tile {tile} or chips with less than "
            f"{min_mass:.0%} pixels of evaluated classes"
        )
    sig = np.concatenate([r.hist for r in done])
    arrays = {name: np.concatenate([r.vectors[name] for r in done if name in r.vectors])
              for name in dict.fromkeys(n for r in done for n in r.vectors)}
    info: dict[str, dict] = {}
    for emb in specs:
        kind = kind_of(emb)
        info[emb.method] = {"kind": kind, "dim": int(arrays[emb.method].shape[1]),
                            "metric": EMBEDDING_KINDS[kind].metric, **emb.to_dict()}
    manifest = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "checkpoint": str(Path(checkpoint).resolve()),
        "classes": classes.to_dict(),
        "signature_classes": space.names,
        "class_order": space.order_names,
        "tile": tile, "stride": stride, "min_mass": min_mass,
        "source": source,
        "cumulative_quantum": QUANTUM,
        "rgb_bands": rgb_bands,
        "scenes": [r.meta for r in done],
        "embeddings": info,
    }
    with atomic_dir(out) as tmp:
        (tmp / "masks").mkdir()
        for r in done:
            staging.place_mask(r.key, tmp / "masks" / f"{r.meta['id']}.tif")
        write_index(tmp, manifest, sig, space.cumulative(sig), tiles, arrays)
    staging.clear()
    return RetrievalIndex(out)
