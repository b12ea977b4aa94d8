"""ONNX export and the onnxruntime engine: dynamic sizes, metadata, agreement with torch, errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import rasterio
import torch
from torch import nn

from rsseg.config.infer import InferConfig
from rsseg.trained.checkpoint import load_predictor
from rsseg.classes import ClassTable
from rsseg.errors import RsSegError
from rsseg.trained.export import export_onnx, export_predictor, trace_shape
from rsseg.infer import border_corrected_predict, predict_file, read_image
from rsseg.models.unet import UNet
from rsseg.models.zoo import PadToStride
from rsseg.trained.engines import load_any_predictor, predictor_for
from rsseg.trained.onnx_engine import METADATA_KEY, OrtModule, load_onnx_predictor
from rsseg.trained.predictor import Predictor

CLASSES = ClassTable(names=("a", "b", "c"), colors=((255, 0, 0), (0, 255, 0), (0, 0, 255)))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_onnx(tiny_run, tmp_path_factory):
    return export_onnx(tiny_run.best_checkpoint, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="module")
def torch_predictor(tiny_run):
    predictor = load_predictor(tiny_run.best_checkpoint, device=torch.device("cpu"))
    predictor.precision = "32"  # the agreement claim is fp32 against fp32
    return predictor


def _scenes(tiny_run):
    data = tiny_run.run_dir.parent.parent / "data"
    return sorted(data.glob("*/images/*.tif"))


def test_roundtrip_metadata(tiny_onnx, torch_predictor):
    onnx_pred = load_onnx_predictor(tiny_onnx)
    assert isinstance(onnx_pred.model, OrtModule)
    assert onnx_pred.classes == torch_predictor.classes
    assert onnx_pred.mean == pytest.approx(torch_predictor.mean)
    assert onnx_pred.std == pytest.approx(torch_predictor.std)
    assert onnx_pred.bands == torch_predictor.bands
    assert onnx_pred.defaults.model_dump(exclude={"precision", "batch_size"}) == \
        torch_predictor.defaults.model_dump(exclude={"precision", "batch_size"})  # every default travels
    assert onnx_pred.precision == "32" and not onnx_pred.channels_last
    props = {p.key: p.value for p in onnx.load(tiny_onnx).metadata_props}
    meta = json.loads(props[METADATA_KEY])
    assert meta["rsseg_version"] and meta["model"]["name"] == "unet" and meta["stride"] == 4
    assert not [p for p in tiny_onnx.parent.iterdir() if p.name.startswith(".")]  # no temp left


@pytest.mark.parametrize("shape", [(2, 3, 96, 96), (1, 3, 100, 140), (1, 3, 97, 33), (1, 3, 3, 5)])
def test_dynamic_batch_height_width(tiny_onnx, torch_predictor, shape):
    onnx_pred = load_onnx_predictor(tiny_onnx)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    got, ref = onnx_pred.logits(x), torch_predictor.logits(x)
    assert got.shape == ref.shape == (shape[0], torch_predictor.classes.num_classes, *shape[2:])
    assert float((got - ref).abs().max()) < 1e-4


def test_argmax_agreement_on_scenes(tiny_run, tiny_onnx, torch_predictor, tmp_path):
    onnx_pred = load_onnx_predictor(tiny_onnx)
    scenes = _scenes(tiny_run)
    assert scenes
    # whole files through predict_file with the checkpoint's window
    t_paths = predict_file(torch_predictor, scenes[0], tmp_path / "torch")
    o_paths = predict_file(onnx_pred, scenes[0], tmp_path / "onnx")
    with rasterio.open(t_paths["classes"]) as a, rasterio.open(o_paths["classes"]) as b:
        assert a.profile == b.profile
        agree = float((a.read(1) == b.read(1)).mean())
    assert agree >= 0.999, agree
    # one epoch of training predicts nearly one class everywhere, so compare logits too
    image, _ = read_image(scenes[0])
    x = torch.from_numpy(torch_predictor.select_and_normalize(image))[None]
    assert float((onnx_pred.logits(x) - torch_predictor.logits(x)).abs().max()) < 1e-4
    # every scene, tiled with small windows so tiles and reflect padding are exercised
    for scene in scenes:
        image, _ = read_image(scene)
        a = border_corrected_predict(torch_predictor, image, window=72, keep=50)
        b = border_corrected_predict(onnx_pred, image, window=72, keep=50)
        assert float((a == b).mean()) >= 0.999, scene


class _Centre(nn.Module):
    """Logits minus their per-tile mean: a random net then predicts many classes, not one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(dim=(2, 3), keepdim=True)


def test_argmax_agreement_with_varied_predictions(tiny_run, torch_predictor, tmp_path):
    torch.manual_seed(0)
    k = torch_predictor.classes.num_classes
    net = PadToStride(nn.Sequential(UNet(3, k, base_width=8, depth=3), _Centre()), 8)
    ref = Predictor(model=net, classes=torch_predictor.classes, mean=torch_predictor.mean,
                    std=torch_predictor.std, defaults=InferConfig(window=72, keep=50), precision="32", channels_last=False)
    onnx_pred = load_onnx_predictor(export_predictor(ref, tmp_path / "random.onnx"))
    for scene in _scenes(tiny_run):
        image, _ = read_image(scene)
        a = border_corrected_predict(ref, image)
        b = border_corrected_predict(onnx_pred, image)
        shares = np.bincount(a.ravel(), minlength=k) / a.size
        assert (shares > 0.05).sum() >= 3, shares  # a meaningful comparison
        assert float((a == b).mean()) >= 0.999, scene


def test_window_override(tiny_run, tmp_path):
    path = export_onnx(tiny_run.best_checkpoint, tmp_path / "w.onnx", window=128, opset=18)
    pred = load_onnx_predictor(path)
    assert (pred.defaults.window, pred.defaults.keep) == (128, 96)  # checkpoint: 256/224, margin kept
    with pytest.raises(RsSegError, match="window 30"):
        export_onnx(tiny_run.best_checkpoint, tmp_path / "x.onnx", window=30)
    with pytest.raises(RsSegError, match="opset 5"):
        export_onnx(tiny_run.best_checkpoint, tmp_path / "x.onnx", opset=5)
    assert not (tmp_path / "x.onnx").exists()


def test_predictor_for_engines(tiny_run, tiny_onnx):
    ckpt = tiny_run.best_checkpoint
    assert isinstance(load_any_predictor(tiny_onnx).model, OrtModule)
    assert not isinstance(load_any_predictor(ckpt).model, OrtModule)
    assert isinstance(predictor_for(tiny_onnx, "onnx").model, OrtModule)
    converted = predictor_for(ckpt, "onnx")  # exported to a temporary file on the fly
    assert isinstance(converted.model, OrtModule)
    assert converted.logits(torch.zeros(1, 3, 40, 40)).shape == (1, converted.classes.num_classes, 40, 40)
    with pytest.raises(RsSegError, match="tiny.onnx is an ONNX model"):
        predictor_for(tiny_onnx, "torch")
    with pytest.raises(RsSegError, match="unknown engine"):
        predictor_for(ckpt, "tensorrt")  # type: ignore[arg-type]


def test_missing_corrupt_and_foreign_files(tiny_onnx, tmp_path):
    with pytest.raises(RsSegError, match="not found: .*missing.onnx"):
        load_onnx_predictor(tmp_path / "missing.onnx")
    with pytest.raises(RsSegError, match="not a file: "):
        load_onnx_predictor(tmp_path)
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model\n" * 20)
    with pytest.raises(RsSegError, match="junk.onnx is not a loadable ONNX model"):
        load_any_predictor(junk)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(tiny_onnx.read_bytes()[:2000])
    with pytest.raises(RsSegError, match="truncated.onnx is not a loadable ONNX model"):
        load_onnx_predictor(truncated)
    foreign = tmp_path / "foreign.onnx"  # a valid ONNX file that rsseg did not write
    torch.onnx.export(nn.Conv2d(3, 2, 1), (torch.zeros(1, 3, 8, 8),), foreign, dynamo=False)
    with pytest.raises(RsSegError, match="foreign.onnx has no rsseg metadata"):
        load_onnx_predictor(foreign)


class _FFT(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft2(x).abs()[:, :3, :, :1].expand(-1, -1, -1, x.shape[-1])


class _ParityBranch(nn.Module):
    """Python control flow on a shape: tracing bakes in one branch, so odd widths diverge."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y if x.shape[-1] % 2 == 0 else -y


def _predictor(model: nn.Module) -> Predictor:
    return Predictor(model=model, classes=CLASSES, mean=[0.0] * 3, std=[1.0] * 3, defaults=InferConfig(window=48, keep=32),
                     precision="32", channels_last=False)


def test_unexportable_model_is_a_clear_error(tmp_path):
    out = tmp_path / "fft.onnx"
    with pytest.raises(RsSegError, match="cannot export my-fft-model to ONNX: .*fft_rfft2"):
        export_predictor(_predictor(_FFT()), out, name="my-fft-model")
    assert not out.exists()


def test_wrong_graph_fails_verification(tmp_path):
    out = tmp_path / "branch.onnx"
    with pytest.raises(RsSegError, match=r"branch.onnx: ONNX and torch disagree .*max abs diff"):
        export_predictor(_predictor(_ParityBranch()), out)
    assert not out.exists()


def test_trace_shape_is_never_a_multiple_of_the_stride():
    for stride in (2, 4, 8, 16, 32):
        h, w = trace_shape(stride, 256)
        assert h % stride and w % stride and h > stride and w > stride


def test_smp_unet_resnet18_exports(tmp_path):
    pytest.importorskip("segmentation_models_pytorch")
    from rsseg.config.model import SMPUNetConfig
    from rsseg.models import build_model

    torch.manual_seed(0)
    cfg = SMPUNetConfig(encoder="resnet18", encoder_depth=3, decoder_channels=[16, 8, 8])
    model = build_model(cfg, 4, 3)
    pred = Predictor(model=model, classes=CLASSES, mean=[0.0] * 4, std=[1.0] * 4, bands=[0, 1, 2, 3],
                     defaults=InferConfig(window=64, keep=48), precision="32", channels_last=False)
    path = export_predictor(pred, tmp_path / "smp.onnx", name="smp-unet")
    onnx_pred = load_onnx_predictor(path)
    assert onnx_pred.bands == [0, 1, 2, 3] and onnx_pred.in_channels == 4
    x = torch.randn(2, 4, 45, 70)  # not a multiple of the stride (8)
    ref = pred.logits(x)
    got = onnx_pred.logits(x)
    assert float((got - ref).abs().max()) < 1e-3
    assert float((got.argmax(1) == ref.argmax(1)).float().mean()) >= 0.999
