"""`rsseg explain`: last-layer activation maps (seed 000 Fig. 9) of a trained checkpoint."""

import dataclasses
import json
import re

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from typer.testing import CliRunner

from rsseg.trained.checkpoint import load_predictor
from rsseg.classes import ClassTable
from rsseg.cli import app
from rsseg.errors import RsSegError
from rsseg.explain import explain_image, file_stem
from rsseg.infer import border_corrected_predict, read_image

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")]
runner = CliRunner()


@pytest.fixture(scope="module")
def scene(tiny_run):
    return next((tiny_run.run_dir.parent.parent / "data" / "test" / "images").glob("*.tif"))


@pytest.fixture(scope="module")
def predictor(tiny_run):
    return load_predictor(tiny_run.best_checkpoint)


def plain(text: str) -> str:
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())


def direct_logits(predictor, image: np.ndarray) -> np.ndarray:
    """One forward pass over the reflect-padded scene (it fits one window), centre cropped."""
    window, keep = predictor.defaults.window, predictor.defaults.keep
    m = (window - keep) // 2
    x = predictor.select_and_normalize(image)
    _, h, w = x.shape
    x = np.pad(x, ((0, 0), (m, window - h - m), (m, window - w - m)), mode="reflect")
    bf16 = predictor.precision == "bf16"  # like with like: the predictor's precision on both sides
    with torch.no_grad(), torch.autocast(predictor.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = predictor.model(torch.from_numpy(np.ascontiguousarray(x))[None].to(predictor.device))
    return out[0, :, m : m + h, m : m + w].float().cpu().numpy()


@pytest.mark.bf16
def test_every_class_map_is_the_models_last_layer(tiny_run, scene, predictor, tmp_path):
    out = tmp_path / "act"
    result = explain_image(tiny_run.best_checkpoint, scene, out, progress=False)
    image, _ = read_image(scene)
    k, (_, h, w) = predictor.classes.num_classes, image.shape
    assert result.step == 1 and result.maps.shape == (k, h, w) and result.maps.dtype == np.float32
    # the saved per-class maps are the raw logits, and their argmax is `rsseg predict`'s map
    saved = np.load(out / "activations.npy")
    np.testing.assert_array_equal(saved, result.maps)
    assert h + 2 * (predictor.defaults.window - predictor.defaults.keep) // 2 <= predictor.defaults.window  # one window
    np.testing.assert_allclose(saved, direct_logits(predictor, image), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(saved.argmax(axis=0), border_corrected_predict(predictor, image))
    np.testing.assert_array_equal(result.classes, saved.argmax(axis=0))

    doc = json.loads((out / "activations.json").read_text())
    assert doc["layer"] == "logits" and doc["input"] == scene.name and len(doc["classes"]) == k
    for c, entry in enumerate(doc["classes"]):
        png = out / entry["file"]
        assert png.name == f"{file_stem(c, predictor.classes.names[c])}.png" and png.exists()
        assert entry["name"] == predictor.classes.names[c]
        assert Image.open(png).size == (w, h) and Image.open(png).mode == "RGB"
        assert entry["min"] == pytest.approx(float(saved[c].min()), rel=1e-6)
        assert entry["max"] == pytest.approx(float(saved[c].max()), rel=1e-6)
        assert entry["mean"] == pytest.approx(float(saved[c].mean()), rel=1e-4, abs=1e-5)
    assert file_stem(3, "Low vegetation / trees") == "act_03_low_vegetation_trees"
    assert sum(e["predicted_fraction"] for e in doc["classes"]) == pytest.approx(1.0)
    fig = Image.open(out / "activations.png")
    assert fig.size[0] > 600 and fig.size[1] > 600
    assert not list(out.glob(".*"))  # no temporary files left


def test_probabilities_overview_and_ignored_classes(scene, predictor, tmp_path):
    """A non-square PNG, maps downsampled to max_side, softmax layer, an ignored class."""
    image, _ = read_image(scene)
    crop = np.ascontiguousarray(image[:3, :150, :].transpose(1, 2, 0))
    png = tmp_path / "crop.png"
    Image.fromarray(crop.astype(np.uint8)).save(png)
    classes = predictor.classes
    ignored = dataclasses.replace(predictor, classes=ClassTable(classes.names, classes.colors, ignore=(0,)))
    calls = []
    result = explain_image(ignored, png, tmp_path / "o", layer="probs", max_side=64, progress=calls.append)
    assert calls and calls[-1] == 1
    step = result.step
    assert step == 3 and result.maps.shape == (classes.num_classes, 50, 64)
    np.testing.assert_allclose(result.maps.sum(axis=0), 1.0, atol=1e-5)
    full = border_corrected_predict(predictor, crop.transpose(2, 0, 1))
    np.testing.assert_array_equal(result.maps.argmax(axis=0), full[::step, ::step])
    np.testing.assert_array_equal(result.classes, full[::step, ::step])
    doc = json.loads((tmp_path / "o" / "activations.json").read_text())
    assert doc["overview_step"] == 3 and doc["overview_size"] == [50, 64]
    assert [e["ignored"] for e in doc["classes"]] == [True] + [False] * (classes.num_classes - 1)
    assert all(e["png_range"] == [0.0, 1.0] for e in doc["classes"])
    assert all(Image.open(p).size == (64, 50) for p in result.paths["classes"])


def test_nodata_pixels_are_blank(scene, predictor, tmp_path):
    image, _ = read_image(scene)
    image = image.copy()
    image[:, :40, :40] = 0
    path = tmp_path / "holes.tif"
    with rasterio.open(path, "w", driver="GTiff", height=image.shape[1], width=image.shape[2],
                       count=image.shape[0], dtype=image.dtype, nodata=0) as dst:
        dst.write(image)
    result = explain_image(predictor, path, tmp_path / "o", progress=False)
    assert np.isnan(result.maps[:, :40, :40]).all() and not np.isnan(result.maps[:, 40:, 40:]).any()
    assert (result.classes[:40, :40] == 255).all()
    rgba = np.asarray(Image.open(result.paths["classes"][0]))
    assert rgba.shape[2] == 4 and (rgba[:40, :40, 3] == 0).all() and (rgba[40:, 40:, 3] == 255).all()


def test_cli_explain(tiny_run, scene, tmp_path):
    out = tmp_path / "cli"
    result = runner.invoke(app, ["explain", str(tiny_run.best_checkpoint), str(scene), "--out", str(out),
                                 "--max-side", "96", "--cmap", "viridis"])
    assert result.exit_code == 0, result.output
    names = load_predictor(tiny_run.best_checkpoint).classes.names
    assert len(list(out.glob("act_*.png"))) == len(names)
    assert (out / "activations.png").exists() and "activations.json" in plain(result.output)
    assert names[0] in result.output
    assert json.loads((out / "activations.json").read_text())["colormap"] == "viridis"


def test_bad_inputs_give_one_clear_error(tiny_run, scene, tmp_path):
    ckpt = tiny_run.best_checkpoint
    two = tmp_path / "two.tif"
    with rasterio.open(two, "w", driver="GTiff", height=40, width=40, count=2, dtype="uint8") as dst:
        dst.write(np.zeros((2, 40, 40), np.uint8))
    with pytest.raises(RsSegError, match=r"two\.tif has 2 band"):
        explain_image(ckpt, two, tmp_path / "o", progress=False)
    bogus = tmp_path / "notes.tif"
    bogus.write_text("not an image")
    cases = [
        ([str(ckpt), str(tmp_path / "missing.tif")], "input not found: .*missing.tif"),
        ([str(ckpt), str(bogus)], "notes.tif is not a readable image"),
        ([str(tmp_path / "none.ckpt"), str(scene)], "checkpoint not found: .*none.ckpt"),
        ([str(bogus), str(scene)], "notes.tif is not a readable checkpoint"),
        ([str(ckpt), str(two)], "two.tif has 2 band"),
        ([str(ckpt), str(scene), "--layer", "relu"], "unknown layer 'relu'"),
        ([str(ckpt), str(scene), "--tta"], "TTA averages probabilities"),
        ([str(ckpt), str(scene), "--cmap", "nope"], "unknown colour map 'nope'"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["explain", *args, "--out", str(tmp_path / "o")])
        assert result.exit_code == 2, (args, result.output)
        assert re.search(message, plain(result.output)), (message, result.output)
        assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())
