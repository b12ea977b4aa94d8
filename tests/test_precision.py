"""Precision: ``RSSEG_PRECISION`` forces what ``auto`` means, and maps do not depend on the
machine: inference is fp32 unless bf16 is asked for (README, "Precision")."""

import re

import numpy as np
import pytest
import rasterio
import torch
from typer.testing import CliRunner

from rsseg import runtime
from rsseg.trained.checkpoint import load_predictor
from rsseg.classes import ClassTable
from rsseg.cli import app
from rsseg.config import load_config
from rsseg.data.synthetic import generate_scene, write_scene
from rsseg.errors import RsSegError
from rsseg.infer import PredictOptions
from rsseg.trained.predictor import Predictor
from rsseg.runtime import PRECISION_ENV, use_bf16

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")]
runner = CliRunner()

#: share of pixels where the tiny trained model's bf16 map must agree with its fp32 map
BF16_AGREEMENT = 0.98


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    image, _ = generate_scene(300, 333, seed=41)
    path = tmp_path_factory.mktemp("precision") / "scene.tif"
    write_scene(image, None, path, None)
    return path


def plain(text: str) -> str:
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())


def predict(ckpt, scene, out, *args, env: str):
    """``rsseg predict`` with ``RSSEG_PRECISION=env``: (class map, the precision tag it records)."""
    result = runner.invoke(app, ["predict", str(ckpt), str(scene), "--out", str(out), *args],
                           env={PRECISION_ENV: env})
    assert result.exit_code == 0, result.output
    with rasterio.open(out / "scene_classes.tif") as ds:
        return ds.read(1), ds.tags()["rsseg_precision"]


def test_rsseg_precision_forces_what_auto_means_and_nothing_else(monkeypatch):
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    for native in (True, False):
        monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda native=native: native)
        assert use_bf16("auto", "cpu") is native
        for forced, bf16 in (("32", False), ("bf16", True), ("auto", native)):
            monkeypatch.setenv(PRECISION_ENV, forced)
            assert use_bf16("auto", "cpu") is bf16, (native, forced)
            assert use_bf16("32", "cpu") is False and use_bf16("bf16", "cpu") is True
        monkeypatch.delenv(PRECISION_ENV)
    monkeypatch.setenv(PRECISION_ENV, "fp16")  # checked even where the precision is explicit
    with pytest.raises(RsSegError, match=r"^RSSEG_PRECISION='fp16' is not a precision: set 32 or bf16, or unset it for auto$"):
        use_bf16("32", "cpu")


@pytest.mark.bf16
def test_default_inference_is_fp32_whatever_auto_means(trained, scene, tmp_path, monkeypatch):
    """``RSSEG_PRECISION=bf16`` makes training's ``auto`` bf16, yet predict keeps the fp32 map;
    ``--precision bf16`` is the opt-in, close to it (``BF16_AGREEMENT``)."""
    assert load_config(None).infer.precision == "32"
    monkeypatch.setenv(PRECISION_ENV, "bf16")
    assert load_predictor(trained).precision == "32"  # evaluate, explain, index use this too
    fp32, tag32 = predict(trained, scene, tmp_path / "fp32", env="32")
    auto, tag_auto = predict(trained, scene, tmp_path / "auto", env="bf16")
    assert tag32 == tag_auto == "32"
    assert len(np.unique(fp32)) >= 2  # a real map, not one class everywhere
    np.testing.assert_array_equal(auto, fp32)
    bf16, tag16 = predict(trained, scene, tmp_path / "bf16", "--precision", "bf16", env="32")
    assert tag16 == "bf16"
    agreement = float((bf16 == fp32).mean())
    print(f"bf16 / fp32 class agreement of the tiny model: {agreement:.4%}")
    assert agreement >= BF16_AGREEMENT, agreement


def test_infer_precision_key_selects_bf16(trained, tmp_path, monkeypatch):
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    saved = load_predictor(trained).config
    cfg = saved.model_copy(update={"infer": saved.infer.model_copy(update={"precision": "bf16"})})
    assert load_predictor(trained, config=cfg).precision == "bf16"
    cfg = load_config(None, ["infer.precision=32"])  # YAML's number 32 is the string "32"
    assert cfg.infer.precision == "32"


def test_a_bad_rsseg_precision_fails_before_any_work(tiny_config_path, trained, scene, tmp_path):
    runs = tiny_config_path.parent / "runs"
    result = runner.invoke(app, ["train", str(tiny_config_path), "--set", "output.name=badprec"],
                           env={PRECISION_ENV: "fp16"})
    assert result.exit_code == 2, result.output
    assert "RSSEG_PRECISION='fp16' is not a precision: set 32 or bf16" in plain(result.output)
    assert "Traceback" not in result.output and not (runs / "badprec").exists()
    result = runner.invoke(app, ["predict", str(trained), str(scene), "--out", str(tmp_path / "o")],
                           env={PRECISION_ENV: "16"})
    assert result.exit_code == 2 and "RSSEG_PRECISION='16'" in plain(result.output), result.output
    assert not (tmp_path / "o").exists()
    result = runner.invoke(app, ["predict", str(trained), str(scene), "--out", str(tmp_path / "o"),
                                 "--precision", "fp16"])
    assert result.exit_code == 2 and "unknown precision 'fp16'" in plain(result.output), result.output
    assert not (tmp_path / "o").exists()


def test_bf16_on_a_gpu_without_it_fails_before_any_work(tiny_config_path, trained, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    runs = tiny_config_path.parent / "runs"
    result = runner.invoke(app, ["train", str(tiny_config_path), "--set", "output.name=gpubf16",
                                 "--set", "train.accelerator=gpu"], env={PRECISION_ENV: "bf16"})
    assert result.exit_code == 2, result.output
    assert "RSSEG_PRECISION=bf16: this GPU (Tesla T4) has no bf16 support; use 32" in plain(result.output)
    assert not (runs / "gpubf16").exists()
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    assert use_bf16("auto", "cuda") is False  # emulated bf16 is not native
    predictor = load_predictor(trained, device=torch.device("cpu"))
    predictor.device = torch.device("cuda")  # as if loaded there; nothing runs
    with pytest.raises(RsSegError) as err:
        PredictOptions.build(predictor, precision="bf16")
    assert str(err.value) == "--precision=bf16: this GPU (Tesla T4) has no bf16 support; use 32"


def test_an_onnx_model_refuses_bf16_and_keeps_fp32():
    class Numpy:  # what rsseg.trained.onnx_engine.OrtModule looks like to a Predictor
        takes_numpy = True

    predictor = Predictor(model=Numpy(), classes=ClassTable(names=("a", "b"), colors=((0, 0, 0), (9, 9, 9))),
                          mean=[0.0], std=[1.0])
    with pytest.raises(RsSegError, match=r"^--precision bf16 needs a torch checkpoint: an ONNX model runs in fp32$"):
        PredictOptions.build(predictor, precision="bf16")
    for precision in ("32", "auto"):
        assert PredictOptions.build(predictor, precision=precision).configure(predictor).precision == "32"
