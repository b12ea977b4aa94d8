"""The ``whole`` prediction mode, ``infer.mode`` as the default of predict and evaluate, and
evaluation of a checkpoint on another folder of the same layout."""

from __future__ import annotations

import json
import shutil
import typing
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from fakedata import dubai, folder
from fakedata._io import colorize, write_png, write_tif
from infer_helpers import CLASSES, K, BitClasses, random_image, write_geotiff
from typer.testing import CliRunner

from rsseg.cli import app
from rsseg.config.infer import InferConfig
from rsseg.gis.formats import VECTOR_FORMATS
from rsseg.infer.confidence import CONFIDENCES
from rsseg.infer.stitch import BLENDS
from rsseg.errors import RsSegError
from rsseg.infer import PredictOptions, border_corrected_predict, predict_file, windows
from rsseg.infer.windows import MODES, WHOLE_MAX_PIXELS, WHOLE_MULTIPLE, plan_grid
from rsseg.models.unet import UNet
from rsseg.trained.predictor import Predictor

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _unet_predictor(**kw) -> Predictor:
    torch.manual_seed(0)
    # granule 32 (pads inside unless the scene is padded); BitClasses: equal maps = bitwise equal logits
    model = BitClasses(UNet(3, K, base_width=4, depth=5))
    return Predictor(model=model, classes=CLASSES, mean=[100.0, 110.0, 120.0], std=[50.0] * 3,
                     precision="32", channels_last=False, **kw)


def _plain_script(predictor: Predictor, image: np.ndarray) -> np.ndarray:
    """What a plain script does: reflect-pad to multiples of 32, one forward pass, crop."""
    x = predictor.select_and_normalize(image)
    _, h, w = x.shape
    x = np.pad(x, ((0, 0), (0, -h % 32), (0, -w % 32)), mode="reflect")
    with torch.no_grad():
        out = predictor.model(torch.from_numpy(np.ascontiguousarray(x))[None])[0].argmax(0).numpy()
    return out[:h, :w].astype(np.uint8)


@pytest.mark.parametrize("shape", [(70, 101), (96, 33), (64, 64)])
def test_whole_mode_is_one_forward_pass_of_the_padded_scene(shape):
    predictor = _unet_predictor()
    image = random_image(*shape)
    calls = []
    got = border_corrected_predict(predictor, image, mode="whole", progress=calls.append)
    np.testing.assert_array_equal(got, _plain_script(predictor, image))
    assert len(np.unique(got)) > 1  # not trivially one class
    assert calls == [1]  # one window
    grid = plan_grid(*shape, "whole", 256, 224)
    assert grid.windows == 1 and grid.margin == 0
    assert grid.win_y % WHOLE_MULTIPLE == 0 and grid.win_x % WHOLE_MULTIPLE == 0
    assert grid.win_y - shape[0] < WHOLE_MULTIPLE and grid.win_x - shape[1] < WHOLE_MULTIPLE


def test_whole_mode_streams_one_big_window_into_the_geotiffs(tmp_path):
    predictor = _unet_predictor()
    image = random_image(300, 517)
    scene = write_geotiff(tmp_path / "scene.tif", image)
    paths = predict_file(predictor, scene, tmp_path / "out", mode="whole", probabilities=True, confidence="max")
    with rasterio.open(paths["classes"]) as src:
        np.testing.assert_array_equal(src.read(1), _plain_script(predictor, image))
        assert src.tags()["rsseg_mode"] == "whole"
    with rasterio.open(paths["probabilities"]) as src:
        assert src.shape == (300, 517)
    assert json.loads(paths["areas"].read_text())["mode"] == "whole"


def test_whole_mode_with_tta_runs_non_square_scenes():
    predictor = _unet_predictor()
    image = random_image(40, 70)
    got = border_corrected_predict(predictor, image, mode="whole", tta=True)
    assert got.shape == (40, 70) and got.max() < K


def test_whole_refuses_a_scene_over_the_pixel_limit(tmp_path, monkeypatch):
    side = int(WHOLE_MAX_PIXELS**0.5) + 1
    with pytest.raises(RsSegError, match="over the whole mode's limit of 16.8 Mpix.*use --mode fast"):
        plan_grid(side, side, "whole", 256, 224)
    plan_grid(4096, 4096, "whole", 256, 224)  # the limit itself is allowed
    monkeypatch.setattr(windows, "WHOLE_MAX_PIXELS", 1000)
    scene = write_geotiff(tmp_path / "big.tif", random_image(40, 40))
    with pytest.raises(RsSegError, match=r"big\.tif: a 40x40 scene .*use --mode fast"):
        predict_file(_unet_predictor(), scene, tmp_path / "out", mode="whole")


def test_whole_refuses_low_memory_and_blending():
    predictor = _unet_predictor()
    with pytest.raises(RsSegError, match="^--mode whole --low-memory True: low_memory caps .* use mode fast with"):
        PredictOptions.build(predictor, mode="whole", low_memory=True)
    with pytest.raises(RsSegError, match="^--mode whole --blend linear: blending needs a margin .*not the whole mode"):
        PredictOptions.build(predictor, mode="whole", blend="linear")


def _choices(field: str) -> set[str]:
    """The names a Literal (or Literal | None) config field accepts."""
    args = typing.get_args(InferConfig.model_fields[field].annotation)
    literal = next((a for a in args if typing.get_origin(a) is typing.Literal), None)
    return set(typing.get_args(literal) if literal is not None else args)


def test_infer_config_lists_every_name_its_registries_own():
    """InferConfig declares the options; the names are the registries' (one owner each)."""
    assert _choices("mode") == set(MODES)
    assert _choices("blend") == set(BLENDS)
    assert _choices("confidence") == set(CONFIDENCES)
    assert _choices("vector") == set(VECTOR_FORMATS)
    assert InferConfig().mode == "reference"
    with pytest.raises(ValueError):
        InferConfig(mode="tiled")


def test_predictor_mode_is_the_default_of_predict_options():
    predictor = _unet_predictor(defaults=InferConfig(mode="whole"))
    assert PredictOptions.build(predictor).mode == "whole"
    assert PredictOptions.build(predictor, mode="fast").mode == "fast"
    image = random_image(70, 101)
    np.testing.assert_array_equal(border_corrected_predict(predictor, image, mode=None),
                                  _plain_script(predictor, image))


# --- the CLI on a trained checkpoint -------------------------------------------------------


def _with_infer_mode(run_dir: Path, dest: Path, mode: str) -> Path:
    """A copy of a run whose best checkpoint's saved config says ``infer.mode: mode``."""
    run = shutil.copytree(run_dir, dest)
    ckpt_path = run / "checkpoints" / "best.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=False)
    ckpt["hyper_parameters"]["config"]["infer"]["mode"] = mode
    torch.save(ckpt, ckpt_path)
    return ckpt_path


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("mode", ["reference", "fast", "whole"])
def test_evaluate_mode_is_written_to_metrics(tiny_run, tmp_path, mode):
    out = tmp_path / "ev"
    result = runner.invoke(app, ["evaluate", str(tiny_run.best_checkpoint), "--mode", mode, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"mode: {mode} (from --mode)" in result.output
    metrics = _metrics(out)
    assert metrics["mode"] == mode and metrics["tta"] is False


def test_evaluate_default_is_the_reference_mode_of_a_default_checkpoint(tiny_run, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert runner.invoke(app, ["evaluate", str(tiny_run.best_checkpoint), "--out", str(a)]).exit_code == 0
    assert runner.invoke(app, ["evaluate", str(tiny_run.best_checkpoint), "--mode", "reference",
                               "--out", str(b)]).exit_code == 0
    assert _metrics(a) == _metrics(b) and _metrics(a)["mode"] == "reference"


def test_checkpoint_infer_mode_is_the_default_of_predict_and_evaluate(trained, tmp_path):
    from rsseg.config import Config
    from rsseg.data.sources import get_source
    from rsseg.metrics import ConfusionMatrix
    from rsseg.trained.checkpoint import read_checkpoint

    ckpt = _with_infer_mode(Path(trained).parents[1], tmp_path / "run", "whole")
    result = runner.invoke(app, ["evaluate", str(ckpt), "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert "mode: whole (from the checkpoint's infer.mode)" in result.output
    metrics = _metrics(tmp_path / "ev")
    assert metrics["mode"] == "whole"

    # evaluate reports exactly the maps `rsseg predict` makes with its defaults
    cfg = Config.model_validate(read_checkpoint(ckpt)["hyper_parameters"]["config"])
    source = get_source(cfg.data)
    confusion = ConfusionMatrix(len(metrics["class_names"]))
    for scene in source.scenes("test"):
        out = tmp_path / "maps"
        result = runner.invoke(app, ["predict", str(ckpt), str(scene.image), "--out", str(out), "--no-cog",
                                     "--no-stac"])
        assert result.exit_code == 0, result.output
        classes = out / f"{scene.image.stem}_classes.tif"
        with rasterio.open(classes) as src:
            assert src.tags()["rsseg_mode"] == "whole"
            confusion.update(src.read(1), source.read_mask(scene))
    assert confusion.matrix.tolist() == metrics["confusion_matrix"]

    # --mode still wins over the checkpoint
    scene = source.scenes("test")[0].image
    result = runner.invoke(app, ["predict", str(ckpt), str(scene), "--out", str(tmp_path / "ref"),
                                 "--mode", "reference", "--no-cog", "--no-stac"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ref" / f"{scene.stem}_areas.json").read_text())["mode"] == "reference"


def test_evaluate_with_tta(tiny_run, tmp_path):
    result = runner.invoke(app, ["evaluate", str(tiny_run.best_checkpoint), "--tta", "--mode", "fast",
                                 "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert "with TTA" in result.output
    metrics = _metrics(tmp_path / "ev")
    assert metrics["tta"] is True and metrics["mode"] == "fast"


def test_evaluate_refuses_whole_on_a_scene_over_the_limit_before_predicting(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr(windows, "WHOLE_MAX_PIXELS", 1000)
    result = runner.invoke(app, ["evaluate", str(tiny_run.best_checkpoint), "--mode", "whole",
                                 "--out", str(tmp_path / "ev")])
    assert result.exit_code == 2
    assert "over the whole mode's limit" in result.output and "use --mode fast" in result.output
    assert not (tmp_path / "ev" / "metrics.json").exists()


def test_evaluate_unknown_mode_exits_2(tiny_run, tmp_path):
    result = runner.invoke(app, ["evaluate", str(tiny_run.best_checkpoint), "--mode", "tiled",
                                 "--out", str(tmp_path / "ev")])
    assert result.exit_code == 2 and "unknown prediction mode 'tiled'" in result.output


# --- another folder of the same layout -----------------------------------------------------


def _train(tmp_path: Path, data: dict) -> Path:
    from rsseg.config import load_config
    from rsseg.training.train import train

    cfg = {
        "data": {"cache_dir": str(tmp_path / "cache"), "tile_size": 32, "batch_size": 4, "random_shift": 0, **data},
        "model": {"base_width": 4, "depth": 2},
        "train": {"epochs": 1, "threads": 1},
        "output": {"dir": str(tmp_path / "runs"), "name": "run"},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return train(load_config(path), config_name="run", progress=False).best_checkpoint


def _evaluate_elsewhere(ckpt: Path, other: Path, out: Path) -> dict:
    result = runner.invoke(app, ["evaluate", str(ckpt), "--set", f"data.root={other}", "--split", "test",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    return _metrics(out)


def test_evaluate_a_folder_checkpoint_on_another_folder(tmp_path):
    ckpt = _train(tmp_path, {"dataset": "folder", "root": str(folder.make(tmp_path / "area1"))})
    other = folder.make(tmp_path / "area2")
    # the second area's test scene is all forest: only forest has support there
    for mask in (other / "test" / "masks").glob("*.tif"):
        write_tif(mask, np.ones((40, 40), np.uint8))
    metrics = _evaluate_elsewhere(ckpt, other, tmp_path / "ev")
    support = {name: v["support"] for name, v in metrics["per_class"].items()}
    assert support == {"field": 0, "forest": 1600, "water": 0}


def test_evaluate_a_dubai_checkpoint_on_a_copy_of_the_layout(tmp_path):
    ckpt = _train(tmp_path, {"dataset": "dubai", "root": str(dubai.make(tmp_path / "dubai"))})
    other = dubai.make(tmp_path / "dubai2")
    # the copy's test tile (7) is all one class: its pixels are the only support
    h, w = dubai.SIZES[7]
    for mask in (other / "Tile 7" / "masks").glob("*.png"):
        write_png(mask, colorize(np.full((h, w), 2), dubai.COLORS))
    metrics = _evaluate_elsewhere(ckpt, other, tmp_path / "ev")
    support = {name: v["support"] for name, v in metrics["per_class"].items()}
    assert sum(support.values()) == 2 * h * w and max(support.values()) == 2 * h * w
