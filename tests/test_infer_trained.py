"""Inference with a trained model: fast vs reference, seam scores, and many scenes on Dask."""

import logging

import numpy as np
import pytest
import rasterio
import torch

from rsseg.trained.checkpoint import load_predictor
from rsseg.data.synthetic import generate_scene, write_scene
from rsseg.infer import predict_file, predict_files, seam_score


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Two synthetic scenes whose sides are not multiples of 224."""
    base = tmp_path_factory.mktemp("scenes")
    paths = []
    for i, (h, w) in enumerate([(470, 610), (300, 333)]):
        image, _ = generate_scene(h, w, seed=40 + i)
        write_scene(image, None, base / f"scene{i}.tif", None)
        paths.append(base / f"scene{i}.tif")
    return paths


def _classes(path):
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_fast_agrees_with_reference_and_seams_vanish(trained, scenes, tmp_path):
    predictor = load_predictor(trained)
    maps = {
        mode: _classes(predict_file(predictor, scenes[0], tmp_path / mode, mode=mode, fast_tile=256)["classes"])
        for mode in ("reference", "fast", "naive")
    }
    assert len(np.unique(maps["reference"])) >= 2  # a real map, not one class everywhere
    agreement = (maps["fast"] == maps["reference"]).mean()
    assert agreement >= 0.99, agreement
    seams = {mode: seam_score(m, 224).score for mode, m in maps.items()}
    print(f"fast/reference agreement {agreement:.4f}; seam scores on the 224 grid {seams}")
    assert seams["reference"] < seams["naive"]


def test_dask_local_cluster_is_byte_identical(trained, scenes, tmp_path):
    pytest.importorskip("distributed")
    ckpt = trained
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00not a tiff")
    # 2 workers x 1 thread each against 1 thread here: oneDNN rounds by thread count
    single = predict_files(ckpt, scenes, tmp_path / "single", show_progress=False, probabilities=True, threads=1)
    multi = predict_files(ckpt, [*scenes, bad], tmp_path / "dask", workers=2, raise_on_error=False,
                          show_progress=True, probabilities=True)
    assert [r.ok for r in multi] == [True, True, False]
    assert "broken.tif" in multi[2].error and "not a readable image" in multi[2].error
    for one, many in zip(single, multi, strict=False):
        assert set(one) == set(many) == {"classes", "color", "blend", "areas", "probabilities", "classes_qml", "item"}
        for key in one:
            assert one[key].name == many[key].name
            assert one[key].read_bytes() == many[key].read_bytes(), key
    assert np.isin(_classes(multi[0]["classes"]), range(7)).all()


def _same_files(one, other):
    assert set(one) == set(other)
    for key in one:
        assert one[key].name == other[key].name
        assert one[key].read_bytes() == other[key].read_bytes(), key


def test_existing_dask_scheduler_is_byte_identical(trained, scenes, tmp_path):
    """``--scheduler ADDRESS``: an already running cluster (here an in-process LocalCluster),
    reached by its address from the library and from the command line."""
    distributed = pytest.importorskip("distributed")
    from typer.testing import CliRunner

    from rsseg.cli import app

    single = predict_files(trained, scenes, tmp_path / "single", show_progress=False, probabilities=True,
                           threads=1)
    threads = torch.get_num_threads()  # an in-process worker pins this process's torch threads
    try:
        with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                      dashboard_address=None, silence_logs=logging.ERROR) as cluster:
            address = cluster.scheduler_address
            remote = predict_files(trained, scenes, tmp_path / "remote", scheduler=address, threads=1,
                                   show_progress=False, probabilities=True)
            assert [r.ok for r in remote] == [True, True]
            for one, many in zip(single, remote, strict=True):
                _same_files(one, many)
            out = tmp_path / "cli"
            result = CliRunner().invoke(app, ["predict", str(trained), *map(str, scenes), "--out", str(out),
                                              "--scheduler", address, "--threads", "1", "--probabilities",
                                              "--low-memory"])  # smaller passes, same reference maps
            assert result.exit_code == 0, result.output
            for one in single:
                _same_files(one, {k: out / p.name for k, p in one.items()})
            # the shared cluster keeps running, without our model on its worker
            with distributed.Client(address) as client:
                plugins = client.run(lambda dask_worker: sorted(dask_worker.plugins))
            assert not [n for names in plugins.values() for n in names if n.startswith("rsseg-")]
    finally:
        torch.set_num_threads(threads)


def test_onnx_model_predicts_without_importing_torch(trained, scenes, tmp_path):
    """``rsseg predict model.onnx`` never imports torch (0.55 GB of resident memory with the
    CUDA wheel): here torch cannot even be imported, and the files equal an in-process ONNX
    run's, made with torch loaded."""
    import subprocess
    import sys

    from rsseg.trained.export import export_onnx

    model = export_onnx(trained, tmp_path / "model.onnx")
    args = ["--mode", "fast", "--fast-tile", "256", "--tta", "--probabilities", "--threads", "1"]
    code = "import sys; sys.modules['torch'] = None; from rsseg.cli import app; app()"
    done = subprocess.run([sys.executable, "-c", code, "predict", str(model), *map(str, scenes),
                           "--out", str(tmp_path / "no-torch"), *args],
                          capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    here = predict_files(model, scenes, tmp_path / "here", show_progress=False, threads=1, mode="fast",
                         fast_tile=256, tta=True, probabilities=True)
    for one in here:
        _same_files(one, {k: tmp_path / "no-torch" / p.name for k, p in one.items()})


def test_a_rerun_on_dask_skips_the_scenes_finished_before_a_kill(trained, scenes, tmp_path):
    out = tmp_path / "out"
    predict_files(trained, [scenes[0]], out, show_progress=False)  # what a killed run had finished
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    results = predict_files(trained, scenes, out, workers=2, threads=1, skip_existing=True, show_progress=False)
    assert [r.skipped for r in results] == [True, False] and all(r.ok for r in results)
    assert {n: (out / n).stat().st_mtime_ns for n in before} == before  # not recomputed
    assert (out / "scene1_classes.tif").exists()
