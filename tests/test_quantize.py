"""int8 quantization of an exported model: agreement with fp32, no torch, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import rasterio

from rsseg.errors import RsSegError
from rsseg.trained.export import export_onnx
from rsseg.infer import predict_file
from rsseg.trained.onnx_engine import METADATA_KEY, load_onnx_predictor
from rsseg.trained.quantize import quantize_onnx

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fp32_model(trained, tmp_path_factory):
    return export_onnx(trained, tmp_path_factory.mktemp("quant") / "model.onnx")


@pytest.fixture(scope="module")
def images(tiny_config_path):
    found = sorted((tiny_config_path.parent / "data").glob("train/images/*.tif"))
    assert found
    return found


def _classes(path):
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_int8_model_agrees_with_fp32_and_runs_without_torch(fp32_model, images, tmp_path):
    """The CLI quantizes with torch made unimportable; the int8 file predicts a test scene
    like the fp32 file (>= 99 % of pixels) and records its check in the metadata."""
    out = tmp_path / "model-int8.onnx"
    code = "import sys; sys.modules['torch'] = None; from rsseg.cli import app; app()"
    done = subprocess.run([sys.executable, "-c", code, "quantize", str(fp32_model), *map(str, images),
                           "--out", str(out), "--windows", "16"],
                          capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    meta = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}[METADATA_KEY])
    assert meta["quantized"]["agreement"] >= 0.99 and meta["quantized"]["check_windows"] == 8
    assert meta["classes"] == json.loads(
        {p.key: p.value for p in onnx.load(str(fp32_model)).metadata_props}[METADATA_KEY])["classes"]
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(out)).graph.node)
    scene = min(images[0].parents[2].glob("test/images/*.tif"))
    maps = {name: _classes(predict_file(load_onnx_predictor(model), scene, tmp_path / name, mode="fast",
                                        fast_tile=256)["classes"])
            for name, model in (("fp32", fp32_model), ("int8", out))}
    assert len(np.unique(maps["fp32"])) >= 2
    agreement = (maps["int8"] == maps["fp32"]).mean()
    print(f"int8 vs fp32 agreement on {scene.name}: {agreement:.4%}")
    assert agreement >= 0.99


def test_low_agreement_writes_nothing(fp32_model, images, tmp_path):
    out = tmp_path / "refused.onnx"
    with pytest.raises(RsSegError, match=r"agrees with fp32 on only .* \(minimum 100\.10%\)"):
        quantize_onnx(fp32_model, images, out, windows=4, min_agreement=1.001)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_bad_calibration_inputs_name_the_file(fp32_model, images, tmp_path):
    one_band = tmp_path / "gray.tif"
    with rasterio.open(one_band, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8") as dst:
        dst.write(np.zeros((1, 64, 64), dtype=np.uint8))
    with pytest.raises(RsSegError, match=r"gray\.tif has 1 band\(s\) but the model expects 3"):
        quantize_onnx(fp32_model, [one_band], tmp_path / "a.onnx", windows=4)
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 not a tiff")
    with pytest.raises(RsSegError, match=r"broken\.tif"):
        quantize_onnx(fp32_model, [broken], tmp_path / "b.onnx", windows=4)
    with pytest.raises(RsSegError, match="at least 2 windows"):
        quantize_onnx(fp32_model, images, tmp_path / "c.onnx", windows=1)
    with pytest.raises(RsSegError, match="at least one calibration image"):
        quantize_onnx(fp32_model, [], tmp_path / "d.onnx")


def test_output_path_problems_are_reported_before_the_work(fp32_model, images, tmp_path):
    with pytest.raises(RsSegError, match="output path is a directory"):
        quantize_onnx(fp32_model, images, tmp_path, windows=4)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RsSegError, match="cannot create output directory"):
        quantize_onnx(fp32_model, images, blocker / "sub" / "m.onnx", windows=4)


@pytest.fixture(scope="module")
def int8_model(fp32_model, images, tmp_path_factory):
    return quantize_onnx(fp32_model, images, tmp_path_factory.mktemp("int8") / "m8.onnx", windows=8).path


def test_scene_unlike_the_calibration_images_gets_a_warning(int8_model, images, tmp_path):
    """The int8 file records the normalised range of its calibration windows; a 16-bit copy
    of a test scene (values x 40) lies far beyond it and is flagged, the scene itself is not."""
    from rsseg.infer.stream import predict_scene

    predictor = load_onnx_predictor(int8_model)
    low, high = predictor.input_range
    assert len(low) == len(high) == predictor.in_channels and all(a < b for a, b in zip(low, high, strict=True))
    scene = min(images[0].parents[2].glob("test/images/*.tif"))
    assert predict_scene(predictor, scene, tmp_path / "same").warnings == []
    with rasterio.open(scene) as src:
        profile, data = src.profile, src.read()
    bright = tmp_path / "bright16.tif"
    profile.update(dtype="uint16")
    with rasterio.open(bright, "w", **profile) as dst:
        dst.write(data.astype(np.uint16) * 40)
    (warning,) = predict_scene(predictor, bright, tmp_path / "bright").warnings
    assert "bright16.tif" in warning and "outside the input range the int8 model was calibrated on" in warning


def test_fp32_files_have_no_range_to_check(fp32_model):
    assert load_onnx_predictor(fp32_model).input_range is None
