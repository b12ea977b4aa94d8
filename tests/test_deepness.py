"""`rsseg export --deepness`: an ONNX file the Deepness QGIS plugin runs (its metadata, read as
the plugin reads it; probabilities out), which rsseg's own engine still predicts with; and
`rsseg predict --simplify` refused before the model runs."""

from __future__ import annotations

import ast
import json
import logging

import numpy as np
import pytest
import rasterio
import torch
from typer.testing import CliRunner

from rsseg.cli import app
from rsseg.infer import border_corrected_predict, read_image
from rsseg.trained.checkpoint import load_predictor
from rsseg.trained.deepness import tiles_overlap
from rsseg.trained.export import export_predictor
from rsseg.trained.onnx_engine import METADATA_KEY, load_onnx_predictor, open_session


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def torch_predictor(tiny_run):
    predictor = load_predictor(tiny_run.best_checkpoint, device=torch.device("cpu"))
    predictor.precision = "32"
    return predictor


@pytest.fixture(scope="module")
def deepness_onnx(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("deepness") / "tiny-deepness.onnx"
    result = CliRunner().invoke(app, ["export", str(tiny_run.best_checkpoint), "--onnx", str(out), "--deepness"])
    assert result.exit_code == 0, result.output
    return out


def _scenes(tiny_run):
    return sorted((tiny_run.run_dir.parent.parent / "data").glob("*/images/*.tif"))


def _props(path) -> dict[str, str]:
    return open_session(path).get_modelmeta().custom_metadata_map


def _class_names_as_deepness_reads(text: str) -> list[str]:
    """The plugin's parse: JSON (else a Python literal), ids sorted and consecutive from 0."""
    try:
        names = json.loads(text)
    except json.JSONDecodeError:
        names = ast.literal_eval(text)
    pairs = sorted(names.items(), key=lambda kv: int(kv[0]))
    assert [int(k) for k, _ in pairs] == list(range(len(pairs)))
    return [v for _, v in pairs]


def test_metadata_is_what_deepness_reads(deepness_onnx, torch_predictor):
    props = _props(deepness_onnx)
    p = torch_predictor
    assert json.loads(props["model_type"]).capitalize() == "Segmentor"
    assert _class_names_as_deepness_reads(props["class_names"]) == list(p.classes.names)
    # synthetic training scenes: UTM, 1 m pixels -> recorded in the checkpoint -> 100 cm/px
    assert float(json.loads(props["resolution"])) == pytest.approx(100.0)
    assert int(json.loads(props["tile_size"])) == int(json.loads(props["tiles_size"])) == p.defaults.window
    assert int(json.loads(props["tiles_overlap"])) == round(100 * (p.defaults.window - p.defaults.keep) / p.defaults.window)
    assert float(json.loads(props["seg_thresh"])) == 0.0
    mean = np.array([float(v) for v in json.loads(props["standardization_mean"])], np.float32)
    std = np.array([float(v) for v in json.loads(props["standardization_std"])], np.float32)
    # the plugin's preprocessing (raw / 255, then standardised) is rsseg's (raw - mean) / std
    raw = np.random.default_rng(0).integers(0, 256, (p.in_channels, 9, 9)).astype(np.float32)
    plugin = (raw / 255.0 - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(plugin, p.select_and_normalize(raw), rtol=1e-4, atol=1e-4)
    rsseg_meta = json.loads(props[METADATA_KEY])
    assert rsseg_meta["output_kind"] == "probabilities" and rsseg_meta["format"] == 2


def test_output_is_probabilities_summing_to_one(deepness_onnx, torch_predictor):
    session = open_session(deepness_onnx)
    assert session.get_outputs()[0].name == "probabilities"
    x = np.random.default_rng(1).normal(size=(2, torch_predictor.in_channels, 70, 90)).astype(np.float32)
    (probs,) = session.run(None, {session.get_inputs()[0].name: x})
    assert probs.shape == (2, torch_predictor.classes.num_classes, 70, 90)
    assert probs.min() >= 0.0
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        ref = torch.softmax(torch_predictor.model(torch.from_numpy(x)) / torch_predictor.temperature, 1)
    np.testing.assert_allclose(probs, ref.numpy(), atol=1e-4)


def test_rsseg_engine_on_a_deepness_file_matches_the_checkpoint(tiny_run, deepness_onnx, torch_predictor):
    onnx_pred = load_onnx_predictor(deepness_onnx)
    image, _ = read_image(_scenes(tiny_run)[0])
    x = torch.from_numpy(torch_predictor.select_and_normalize(image))[None]
    # softmax once: the engine's softmax of what the file gives back is the checkpoint's
    want = torch.softmax(torch_predictor.logits(x) / torch_predictor.temperature, 1).numpy()
    got = torch.softmax(torch.from_numpy(onnx_pred.logits(x.numpy())) / onnx_pred.temperature, 1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    for scene in _scenes(tiny_run)[:2]:
        image, _ = read_image(scene)
        a = border_corrected_predict(torch_predictor, image, window=72, keep=50)
        b = border_corrected_predict(onnx_pred, image, window=72, keep=50)
        assert float((a == b).mean()) >= 0.999, scene


def test_unknown_resolution_is_left_out_with_a_warning(torch_predictor, tmp_path, caplog):
    out = tmp_path / "nores.onnx"
    with caplog.at_level(logging.WARNING, logger="rsseg.trained.export"):
        export_predictor(torch_predictor, out, deepness=True, resolution_m=None)
    assert "resolution" not in _props(out)
    assert any("resolution" in r.getMessage() and "nores.onnx" in r.getMessage() for r in caplog.records)


def test_resolution_option(tiny_run, tmp_path):
    runner = CliRunner()
    out = tmp_path / "res.onnx"
    result = runner.invoke(app, ["export", str(tiny_run.best_checkpoint), "--onnx", str(out), "--deepness",
                                 "--resolution", "30"])
    assert result.exit_code == 0, result.output
    assert float(json.loads(_props(out)["resolution"])) == pytest.approx(30.0)
    plain = tmp_path / "plain.onnx"
    result = runner.invoke(app, ["export", str(tiny_run.best_checkpoint), "--onnx", str(plain), "--resolution", "30"])
    assert result.exit_code == 2 and "--deepness" in result.output
    assert not plain.exists()


def test_tiles_overlap_is_the_border_correction_margin():
    assert tiles_overlap(256, 192) == 25
    assert tiles_overlap(512, 512) == 0


def test_too_large_simplify_is_refused_before_the_model_runs(tiny_run, tmp_path, monkeypatch):
    import rsseg.infer.stream as stream

    def no_prediction(*args, **kwargs):
        raise AssertionError("the model ran before --simplify was checked")

    monkeypatch.setattr(stream, "run_grid", no_prediction)
    scene = _scenes(tiny_run)[0]
    with rasterio.open(scene) as src:
        pixel = abs(src.transform.a)
    out = tmp_path / "pred"
    result = CliRunner().invoke(app, ["predict", str(tiny_run.best_checkpoint), str(scene), "--out", str(out),
                                      "--vector", "gpkg", "--simplify", str(101 * pixel)])
    assert result.exit_code == 2, result.output
    printed = result.output.replace("\n", "")
    assert "--simplify" in printed and str(scene) in printed
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_ground_resolution_of_training_scenes(tmp_path):
    from rasterio.transform import Affine

    from rsseg.gis.areas import ground_resolution

    def write(name, crs, size):
        path = tmp_path / name
        with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8", crs=crs,
                           transform=Affine(size, 0, 500000, 0, -size, 5600000)) as dst:
            dst.write(np.zeros((1, 4, 4), np.uint8))
        return path

    utm = [write(f"u{i}.tif", "EPSG:32633", s) for i, s in enumerate((0.5, 0.5, 2.0))]
    assert ground_resolution(utm) == pytest.approx(0.5)
    feet = write("ft.tif", "EPSG:2263", 1.0)  # US survey feet: 1 ft pixels are 0.3048 m
    assert ground_resolution([feet]) == pytest.approx(0.3048, rel=1e-4)
    assert ground_resolution([*utm, write("none.tif", None, 1.0)]) is None  # unknown: no CRS
    assert ground_resolution([]) is None
