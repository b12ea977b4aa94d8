"""Confidence maps, calibration error (ECE) and temperature scaling (``rsseg calibrate``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import rasterio
import torch
from typer.testing import CliRunner

from rsseg.calibration import logit_rows
from rsseg.reliability import ReliabilityBins, softmax
from rsseg.trained.checkpoint import load_predictor
from rsseg.cli import app
from rsseg.data.synthetic import generate_scene, write_scene
from rsseg.trained.export import export_onnx
from rsseg.infer import predict_file
from rsseg.infer.confidence import confidence
from rsseg.infer.loading import load_model

runner = CliRunner()


def _cli(args: list[str]):
    return runner.invoke(app, args, env={"COLUMNS": "2000"})  # one line, unwrapped
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 200 x 230 px synthetic scene with a nodata block (0 in every band) in a corner."""
    base = tmp_path_factory.mktemp("conf-scene")
    image, _ = generate_scene(200, 230, seed=7)
    image[:, :40, :50] = 0
    path = base / "scene.tif"
    write_scene(image, None, path, None)
    with rasterio.open(path, "r+") as ds:
        ds.nodata = 0
    return path


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read()


def _logits(predictor, path):
    """Full-scene stitched logits (K, H, W), computed apart from the confidence code."""
    image = _read(path)
    out = np.zeros((predictor.classes.num_classes, *image.shape[1:]), np.float32)
    for y0, y1, _, logits in logit_rows(predictor, image):
        out[:, y0:y1] = logits
    return out


def test_max_confidence_is_the_max_softmax_probability(trained, scene, tmp_path):
    predictor = load_predictor(trained, device=torch.device("cpu"))
    paths = predict_file(predictor, scene, tmp_path, confidence="max", probabilities=True)
    conf, classes = _read(paths["confidence"])[0], _read(paths["classes"])[0]
    nodata = classes == 255
    assert nodata[:40, :50].all() and nodata.sum() == 40 * 50
    assert (conf[nodata] == 255).all()
    z = _logits(predictor, scene)
    p = softmax(z.reshape(len(z), -1).T).max(axis=1).reshape(conf.shape)
    expected = np.rint(p * 254).astype(np.uint8)
    assert np.array_equal(conf[~nodata], expected[~nodata])
    assert conf[~nodata].min() < 250  # not a constant map
    assert np.array_equal(conf[~nodata], _read(paths["probabilities"]).max(axis=0)[~nodata])
    assert paths["confidence_qml"].exists() and paths["classes_qml"].exists()
    with rasterio.open(paths["confidence"]) as ds:
        assert ds.nodata == 255 and ds.dtypes[0] == "uint8" and ds.scales[0] == pytest.approx(1 / 254)


def test_margin_and_entropy_in_range_and_ordered(trained, scene, tmp_path):
    predictor = load_predictor(trained, device=torch.device("cpu"))
    maps = {k: _read(predict_file(predictor, scene, tmp_path / k, confidence=k)["confidence"])[0].astype(int)
            for k in ("max", "margin", "entropy")}
    valid = maps["max"] != 255
    for k, m in maps.items():
        assert np.array_equal(m == 255, ~valid), k
        assert m[valid].max() <= 254 and m[valid].min() >= 0
    k = predictor.classes.num_classes
    assert (maps["max"][valid] >= np.ceil(254 / k) - 1).all()  # max p >= 1/K
    assert (maps["margin"][valid] <= maps["max"][valid]).all()  # top1 - top2 <= top1
    z = _logits(predictor, scene)
    p = np.sort(softmax(z.reshape(k, -1).T), axis=1)
    expected = {"margin": p[:, -1] - p[:, -2], "entropy": 1 + (p * np.log(p)).sum(axis=1) / np.log(k)}
    for name, e in expected.items():  # higher = more confident, like max
        e = np.rint(e.reshape(valid.shape) * 254)
        assert np.abs(maps[name][valid] - e[valid]).max() <= 1, name
    one_hot = np.eye(k, dtype=np.float32)[:, :1]  # a certain pixel: 1 for all three
    assert all(confidence(one_hot, c)[0] == pytest.approx(1) for c in ("max", "margin", "entropy"))
    uniform = np.full((k, 1), 1 / k, np.float32)  # an undecided one: 0 margin and entropy
    assert confidence(uniform, "margin")[0] == pytest.approx(0) and confidence(uniform, "entropy")[0] < 1e-6


def test_tta_disagreement_is_a_share_of_eight_views(trained, scene, tmp_path):
    predictor = load_predictor(trained, device=torch.device("cpu"))
    paths = predict_file(predictor, scene, tmp_path, tta=True, disagreement=True, confidence="max")
    d, classes = _read(paths["disagreement"])[0], _read(paths["classes"])[0]
    assert np.array_equal(d == 255, classes == 255)
    allowed = {int(np.rint(254 * i / 8)) for i in range(9)}
    assert set(np.unique(d[classes != 255]).tolist()) <= allowed
    assert (d[classes != 255] > 0).any()  # a 3-epoch model is not D4-invariant everywhere
    blended = predict_file(predictor, scene, tmp_path / "b", blend="linear", confidence="max")
    c = _read(blended["confidence"])[0]
    assert np.array_equal(c == 255, _read(blended["classes"])[0] == 255) and c[c != 255].min() >= 254 // 7
    assert paths["disagreement_qml"].exists()


def test_streamed_ece_equals_direct_numpy():
    rng = np.random.default_rng(1)
    conf = np.concatenate([rng.uniform(0.2, 1.0, 100_000), [1.0, 0.0, 1 / 15, 14 / 15]])
    correct = rng.random(conf.size) < conf ** 2
    bins = ReliabilityBins()
    for chunk in np.array_split(np.arange(conf.size), 7):  # streamed
        bins.add(conf[chunk], correct[chunk])
    idx = np.clip(np.digitize(conf, np.linspace(0, 1, 16)[1:-1]), 0, 14)  # direct
    ece, mce = 0.0, 0.0
    for b in range(15):
        sel = idx == b
        if sel.any():
            gap = abs(correct[sel].mean() - conf[sel].mean())
            ece += sel.mean() * gap
            mce = max(mce, gap)
    assert bins.ece() == pytest.approx(ece, abs=1e-12)
    assert bins.mce() == pytest.approx(mce, abs=1e-12)
    assert bins.count.sum() == conf.size


def test_evaluate_writes_ece_and_reliability_diagram(trained, tmp_path):
    run = shutil.copytree(trained.parents[1], tmp_path / "run")  # evaluate rewrites the run's report
    result = _cli(["evaluate", str(run / "checkpoints" / trained.name)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "eval-test" / "metrics.json").read_text())
    cal = metrics["calibration"]
    assert 0 <= metrics["ece"] <= metrics["mce"] <= 1 and cal["bins"] == 15
    assert sum(cal["count"]) == 192 * 192 and metrics["ece"] == cal["ece"]  # every labelled test pixel
    assert (run / "eval-test" / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    # the same pixels directly: softmax of the stitched logits, then the textbook ECE
    predictor = load_predictor(trained, device=torch.device("cpu"))
    test = trained.parents[3] / "data" / "test"
    z = _logits(predictor, next((test / "images").glob("*.tif"))).reshape(predictor.classes.num_classes, -1).T
    y = _read(next((test / "masks").glob("*.tif")))[0].ravel()
    p = softmax(z)
    conf, correct = p.max(axis=1), p.argmax(axis=1) == y
    edges = np.linspace(0, 1, 16)
    direct = sum(abs(correct[s].mean() - conf[s].mean()) * s.mean()
                 for s in ((conf >= a) & ((conf < b) | (b == 1)) for a, b in zip(edges[:-1], edges[1:])) if s.any())
    assert metrics["ece"] == pytest.approx(direct, abs=1e-5)
    html = (run / "report.html").read_text()
    assert 'alt="reliability diagram"' in html and f"Expected calibration error {metrics['ece']:.4f}" in html


def _overconfident(trained, path, factor=5.0):
    """``trained`` with the last layer's weights and bias x ``factor``: logits x ``factor``."""
    ckpt = torch.load(trained, map_location="cpu", weights_only=True)
    k = len(ckpt["hyper_parameters"]["classes"]["names"])
    state = ckpt["state_dict"]
    last = [n for n, v in state.items() if n.endswith(".weight") and v.ndim == 4 and v.shape[0] == k][-1]
    for name in (last, last.removesuffix(".weight") + ".bias"):
        state[name] = state[name] * factor
    torch.save(ckpt, path)
    return path


def test_calibrate_overconfident_model(trained, scene, tmp_path):
    ckpt = _overconfident(trained, tmp_path / "hot.ckpt")
    before = ckpt.read_bytes()
    result = _cli(["calibrate", str(ckpt)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "hot-calibrated.ckpt"
    assert ckpt.read_bytes() == before  # the original is untouched
    hp = torch.load(out, map_location="cpu", weights_only=True)["hyper_parameters"]
    t = hp["temperature"]
    assert isinstance(t, float) and t > 1.0
    assert "temperature" in result.output and "ECE" in result.output
    ece = [float(v) for v in result.output.split("ECE")[1].split()[0:3:2]]
    assert ece[1] < ece[0], result.output
    # predict with the calibrated checkpoint: softer probabilities, the same classes
    p0, p1 = load_predictor(ckpt), load_predictor(out)
    assert p0.temperature == 1.0 and p1.temperature == pytest.approx(t)
    a = predict_file(p0, scene, tmp_path / "a", probabilities=True, confidence="max")
    b = predict_file(p1, scene, tmp_path / "b", probabilities=True, confidence="max")
    assert np.array_equal(_read(a["classes"]), _read(b["classes"]))
    assert not np.array_equal(_read(a["probabilities"]), _read(b["probabilities"]))
    valid = _read(a["classes"])[0] != 255
    assert _read(b["confidence"])[0][valid].mean() < _read(a["confidence"])[0][valid].mean()
    onnx = export_onnx(out, tmp_path / "cal.onnx")  # the temperature travels with the export
    assert load_model(onnx).temperature == pytest.approx(t)


def test_calibrate_missing_checkpoint_exits_2(tmp_path):
    missing = tmp_path / "nope.ckpt"
    result = _cli(["calibrate", str(missing)])
    assert result.exit_code == 2
    assert str(missing) in result.output and len(result.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_calibrate_empty_split_exits_2_and_writes_nothing(trained, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(trained.parents[3] / "data", root)
    for f in (root / "val" / "images").iterdir():
        f.unlink()
    ckpt = torch.load(trained, map_location="cpu", weights_only=True)
    data = ckpt["hyper_parameters"]["config"]["data"]
    data["root"], data["dataset"] = str(root), "folder"
    path = tmp_path / "noval.ckpt"
    torch.save(ckpt, path)
    result = _cli(["calibrate", str(path)])
    assert result.exit_code == 2, result.output
    assert "val" in result.output and (str(path) in result.output or str(root) in result.output)
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "noval-calibrated.ckpt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_confidence_options_exit_2(trained, scene, tmp_path):
    args = ["predict", str(trained), str(scene), "--out", str(tmp_path)]
    bad = _cli([*args, "--confidence", "best"])
    assert bad.exit_code == 2 and "confidence 'best'" in bad.output
    no_tta = _cli([*args, "--disagreement"])
    assert no_tta.exit_code == 2 and "disagreement needs tta" in no_tta.output
    assert list(tmp_path.iterdir()) == []


def test_bad_temperature_in_checkpoint_exits_2(trained, scene, tmp_path):
    ckpt = torch.load(trained, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["temperature"] = -1.0
    path = tmp_path / "neg.ckpt"
    torch.save(ckpt, path)
    result = _cli(["predict", str(path), str(scene), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert str(path) in result.output and "temperature" in result.output
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_calibrate_in_place_and_out_together_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from rsseg.cli import app

    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"untouched")
    result = CliRunner().invoke(app, ["calibrate", str(ckpt), "--in-place", "--out", str(tmp_path / "o.ckpt")])
    assert result.exit_code == 2 and "--in-place and --out exclude each other" in result.output
    assert ckpt.read_bytes() == b"untouched" and not (tmp_path / "o.ckpt").exists()
