"""Non-finite values: a NaN/inf loss or gradient stops training (issue 16); NaN/inf pixels
of a float scene are nodata at prediction."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from typer.testing import CliRunner

from rsseg.cli import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _poisoned_loss(monkeypatch, *, at_call: int, gradient: bool = False) -> None:
    """The task's loss, made NaN (or given a NaN gradient) from its ``at_call``-th training call
    on (validation calls do not count): what NaN imagery or a diverging run produce."""
    import rsseg.training.train

    real = rsseg.training.train.build_loss
    calls = []

    def build(*args, **kwargs):
        loss_fn = real(*args, **kwargs)

        def poisoned(logits, masks):
            if torch.is_grad_enabled():
                calls.append(1)
                if len(calls) >= at_call:
                    if gradient:  # finite loss, NaN gradient
                        logits.register_hook(lambda g: g * float("nan"))
                    else:
                        return loss_fn(logits, masks) * float("nan")
            return loss_fn(logits, masks)

        return poisoned

    monkeypatch.setattr(rsseg.training.train, "build_loss", build)


def _train(config: Path, name: str, *extra: str):
    args = ["train", str(config), "--set", "train.epochs=2", "--set", f"output.name={name}"]
    return CliRunner().invoke(app, [*args, *[a for s in extra for a in ("--set", s)]], env={"COLUMNS": "1000"})


def _all_finite(ckpt: Path) -> bool:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def test_nan_loss_stops_training_and_keeps_the_good_checkpoint(tiny_config_path, monkeypatch):
    # 8 chips, batch 4: 2 steps an epoch; the 3rd training loss (epoch 1, step 2) is NaN
    _poisoned_loss(monkeypatch, at_call=3)
    result = _train(tiny_config_path, "nan-loss")
    run_dir = tiny_config_path.parent / "runs" / "nan-loss"
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert "epoch 1, step 2" in line and "the loss is nan" in line and str(run_dir) in line
    assert "last.ckpt is the last good checkpoint" in line and "Traceback" not in result.output
    ckpts = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    assert [p.name for p in ckpts] == ["best.ckpt", "last.ckpt"]
    for p in ckpts:  # written after epoch 0, never with the NaN step's weights
        assert _all_finite(p)
        assert torch.load(p, map_location="cpu", weights_only=False)["global_step"] == 2
    assert not (run_dir / "report.html").exists()
    assert not list(run_dir.rglob(".*.tmp*"))


@pytest.mark.parametrize("precision", ["32", "bf16"])  # bf16 autocast has no scaler to skip the step
def test_nan_gradient_at_the_first_step_leaves_no_checkpoint(tiny_config_path, monkeypatch, precision):
    _poisoned_loss(monkeypatch, at_call=1, gradient=True)
    result = _train(tiny_config_path, f"nan-grad-{precision}", f"train.precision={precision}")
    run_dir = tiny_config_path.parent / "runs" / f"nan-grad-{precision}"
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert "epoch 0, step 0" in line and "the gradient of model." in line and "is not finite" in line
    assert "no checkpoint was written" in line and str(run_dir) in line
    assert not list(run_dir.rglob("*.ckpt"))
    assert not (run_dir / "report.html").exists()


def _predict(ckpt: Path, scene: Path, out: Path, caplog) -> tuple[object, list[str]]:
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        result = CliRunner().invoke(app, ["predict", str(ckpt), str(scene), "--out", str(out)],
                                    env={"COLUMNS": "1000"})
    return result, [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _float_scene(path: Path, image: np.ndarray) -> Path:
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    with rasterio.open(path, "w", driver="GTiff", width=image.shape[2], height=image.shape[1],
                       count=image.shape[0], dtype="float32", crs=CRS.from_epsg(32633),
                       transform=Affine(0.5, 0, 500000, 0, -0.5, 5000000)) as dst:  # no nodata tag
        dst.write(image)
    return path


def test_nan_and_inf_pixels_are_nodata_in_the_map_and_the_areas(trained, tmp_path, caplog):
    image = np.random.default_rng(0).uniform(0, 255, (3, 150, 200)).astype(np.float32)
    image[1, 20:50, 30:70] = np.nan  # a 30 x 40 block in one band
    image[2, 100, 150] = np.inf
    image[0, 5, 5] = -np.inf
    bad = ~np.isfinite(image).all(axis=0)
    scene = _float_scene(tmp_path / "holes.tif", image)
    result, warnings = _predict(trained, scene, tmp_path / "out", caplog)
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "out" / "holes_classes.tif") as ds:
        classes, nodata = ds.read(1), ds.nodata
    assert nodata == 255 and np.array_equal(classes == 255, bad)
    areas = json.loads((tmp_path / "out" / "holes_areas.json").read_text())
    assert areas["nodata_pixels"] == bad.sum() == 1202
    assert areas["valid_pixels"] == sum(c["pixels"] for c in areas["classes"]) == image[0].size - 1202
    assert [w for w in warnings if "NaN" in w] == [
        f"{scene}: 1202 pixels (4.01%) hold NaN or infinite values: they are nodata (255) in the "
        "class map and left out of the areas"
    ]


def test_all_nan_scene_warns_and_writes_all_nodata_outputs(trained, tmp_path, caplog):
    scene = _float_scene(tmp_path / "empty.tif", np.full((3, 64, 80), np.nan, dtype=np.float32))
    result, warnings = _predict(trained, scene, tmp_path / "out", caplog)
    assert result.exit_code == 0, result.output
    assert f"{scene}: no valid pixels: every pixel is nodata" in warnings
    with rasterio.open(tmp_path / "out" / "empty_classes.tif") as ds:
        assert (ds.read(1) == 255).all()
    areas = json.loads((tmp_path / "out" / "empty_areas.json").read_text())
    assert areas["valid_pixels"] == 0 and areas["nodata_pixels"] == 64 * 80
    assert all(c["pixels"] == 0 and c["fraction"] is None for c in areas["classes"])


def test_in_memory_prediction_masks_nan_and_integer_scenes_are_unchanged(caplog):
    from infer_helpers import make_predictor

    from rsseg.infer import border_corrected_predict

    predictor = make_predictor()
    image = np.random.default_rng(1).integers(0, 255, (3, 90, 70)).astype(np.uint16)
    expected = border_corrected_predict(predictor, image)
    assert (expected != 255).all()
    holes = image.astype(np.float32)
    holes[:, 10:20, 10:20] = np.nan
    with caplog.at_level(logging.WARNING):
        out = border_corrected_predict(predictor, holes)
    hole = np.zeros(out.shape, dtype=bool)
    hole[10:20, 10:20] = True
    assert np.array_equal(out == 255, hole)
    assert any("100 pixels (1.59%) hold NaN" in r.getMessage() for r in caplog.records)


def test_nan_loss_stops_ssl_pretraining_after_the_last_good_epoch(tiny_config_path, tmp_path, monkeypatch):
    from rsseg.config import load_config, validate_config
    from rsseg.config.pretrain import PretrainConfig
    from rsseg.errors import RsSegError
    from rsseg.ssl.method import SimCLRTask
    from rsseg.ssl.pretrain import pretrain

    raw = load_config(tiny_config_path).model_dump(mode="json")
    raw["train"] = {"threads": 1}
    raw["output"] = {"dir": str(tmp_path / "runs"), "name": "ssl-nan"}
    real, calls = SimCLRTask.loss, []

    def loss(self, v1, v2):  # one step an epoch: epoch 0 is good, epoch 1 (step 1) goes NaN
        calls.append(1)
        value, accuracy = real(self, v1, v2)
        return (value * float("nan") if len(calls) >= 2 else value), accuracy

    monkeypatch.setattr(SimCLRTask, "loss", loss)
    pcfg = PretrainConfig(epochs=3, limit_batches=1, batch_size=4, tile_size=48, view_size=32)
    with pytest.raises(RsSegError, match=r"ssl-nan: training stopped at epoch 1, step 1 .*the loss is nan") as err:
        pretrain(validate_config(raw), pcfg, progress=False)
    last = tmp_path / "runs" / "ssl-nan" / "checkpoints" / "last.ckpt"
    assert "\n" not in str(err.value) and f"{last} is the last good checkpoint" in str(err.value)
    assert _all_finite(last) and torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 1
