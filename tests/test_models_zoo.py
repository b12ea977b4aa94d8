"""The model zoo: every registered model builds for any bands/classes, returns logits at the
input size (also for sizes not divisible by 32), trains, and is declared in the config schema."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
import yaml
from typer.testing import CliRunner

from rsseg.cli import app
from rsseg.config import Config, load_config, validate_config
from rsseg.errors import RsSegError
from rsseg.models import MODELS, build_model, describe_models, encoder_of, model_configs


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# small settings per model, so that the whole file runs in well under a minute on 2 cores
SMALL = {
    "unet": {"base_width": 8, "depth": 3},
    "smp-unet": {"encoder": "resnet18", "decoder_channels": [64, 32, 16, 16, 8]},
    "smp-unetplusplus": {"encoder": "resnet18", "encoder_depth": 4, "decoder_channels": [32, 16, 16, 8]},
    "smp-deeplabv3plus": {"encoder": "resnet18", "decoder_channels": 64},
    "segformer": {"variant": "b0", "decoder_channels": 64},
    "swin-unet": {"decoder_channels": [32, 16, 16, 8, 8]},
}
LARGE = {"deeplabv3-resnet101"}  # built once only
CASES = [(3, 2), (4, 16), (10, 6)]  # (in_channels, num_classes)
H, W = 67, 45  # not divisible by 32 (nor by 2)
TRAIN_H, TRAIN_W = 37, 29  # smaller, to keep the training steps fast
# one Adam step at lr 1e-3 moves every weight by ~1e-3 (Adam's first step is sign-like), which
# overshoots on these deep randomly initialised nets; at their usual learning rates it descends
LR = {"segformer": 1e-4, "deeplabv3-mobilenetv3": 1e-4}


def small_config(name: str):
    return model_configs()[name](name=name, **SMALL.get(name, {}))


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def train_step_lowers_loss(model: torch.nn.Module, in_channels: int, num_classes: int, lr: float) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, in_channels, TRAIN_H, TRAIN_W)
    y = torch.randint(0, num_classes, (2, TRAIN_H, TRAIN_W))
    model.train()  # batch of 2 for batch norm in train mode
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # the same dropout / drop-path masks in both passes
        out = model(x)
        assert out.shape == (2, num_classes, TRAIN_H, TRAIN_W)
        return F.cross_entropy(out, y)

    before = loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss()
    assert after.item() < before.item(), (before.item(), after.item())


def test_every_model_is_declared_in_the_config():
    assert set(model_configs()) == set(MODELS)


@pytest.mark.parametrize("case", CASES, ids=[f"c{c}-k{k}" for c, k in CASES])
@pytest.mark.parametrize("name", sorted(set(MODELS) - LARGE))
def test_model_builds_and_returns_input_size(name, case):
    in_channels, num_classes = case
    torch.manual_seed(0)
    model = build_model(small_config(name), in_channels, num_classes)
    if case == CASES[-1]:
        train_step_lowers_loss(model, in_channels, num_classes, LR.get(name, 1e-3))
    else:
        model.eval()
        with torch.no_grad():
            out = model(torch.randn(1, in_channels, H, W))
        assert out.shape == (1, num_classes, H, W)


@pytest.mark.parametrize("name", sorted(LARGE))
def test_large_model_once(name):
    # built once (58M parameters): logits at the input size, then one training step
    torch.manual_seed(0)
    model = build_model(small_config(name), 10, 16).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 10, H, W)).shape == (1, 16, H, W)
    train_step_lowers_loss(model, 10, 16, LR.get(name, 1e-3))


# where each model keeps its encoder (for freeze_encoder and pretrained weights)
ENCODER_TYPES = {
    "unet": "ModuleList",
    "unet-small": "ModuleList",
    "smp-unet": "ResNetEncoder",
    "smp-unetplusplus": "ResNetEncoder",
    "smp-deeplabv3plus": "ResNetEncoder",
    "deeplabv3-resnet101": "IntermediateLayerGetter",
    "deeplabv3-mobilenetv3": "IntermediateLayerGetter",
    "segformer": "MixVisionTransformerEncoder",
    "swin-unet": "SwinEncoder",
}


@pytest.mark.parametrize("name", sorted(set(MODELS) - LARGE))
def test_encoder_of_every_model(name):
    model = build_model(small_config(name), 4, 3)
    encoder = encoder_of(model)
    assert type(encoder).__name__ == ENCODER_TYPES[name]
    inside = {id(p) for p in encoder.parameters()}
    everything = {id(p) for p in model.parameters()}
    assert inside and inside < everything  # a proper part: the decoder and head stay outside
    first = next(m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 4  # the encoder is the part that sees the bands


def test_encoder_of_large_model_and_plain_modules():
    assert set(ENCODER_TYPES) == set(MODELS)
    model = build_model(small_config("deeplabv3-resnet101"), 3, 2)
    assert type(encoder_of(model)).__name__ == ENCODER_TYPES["deeplabv3-resnet101"]
    assert encoder_of(torch.nn.Conv2d(3, 3, 1)) is None


def test_tiny_input_replicate_pad():
    # the pad exceeds the input size: replicate instead of reflect
    model = build_model(small_config("smp-unet"), 3, 2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 5, 40)).shape == (1, 2, 5, 40)


def test_smp_other_encoders():
    cfg = load_config(None, ["model.name=smp-unet", "model.encoder=mobilenet_v2", "model.encoder_depth=3"])
    model = build_model(cfg.model, 10, 3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 10, 33, 50)).shape == (1, 3, 33, 50)


def test_unknown_model_name_lists_valid_names():
    with pytest.raises(RsSegError) as info:
        load_config(None, ["model.name=nope"])
    for name in MODELS:
        assert f"'{name}'" in str(info.value)

    class Fake:
        name = "nope"

    with pytest.raises(RsSegError, match="unknown model 'nope'.*smp-unet"):
        build_model(Fake(), 3, 2)


def test_unknown_encoder_lists_valid_encoders():
    cfg = load_config(None, ["model.name=smp-deeplabv3plus", "model.encoder=resnet19"])
    with pytest.raises(RsSegError, match="unknown SMP encoder 'resnet19'; did you mean resnet18.*available: .*resnet34"):
        build_model(cfg.model, 3, 2)
    cfg = load_config(None, ["model.name=smp-unet", "model.encoder=tu-convnext_tinyy"])
    with pytest.raises(RsSegError, match="unknown timm encoder 'tu-convnext_tinyy'.*did you mean convnext_tiny"):
        build_model(cfg.model, 3, 2)


def test_unknown_key_in_a_model_section_is_named():
    with pytest.raises(RsSegError) as info:
        load_config(None, ["model.name=smp-unet", "model.encodr=resnet18"])
    message = str(info.value)
    assert "unknown key 'model.encodr'" in message
    assert "did you mean 'model.encoder'" in message
    assert "smp-unet" not in message  # pydantic's union tag is not shown as a key


def test_wrong_type_in_a_model_section():
    with pytest.raises(RsSegError, match=r"model\.variant: .*'b0'"):
        load_config(None, ["model.name=segformer", "model.variant=b9"])
    with pytest.raises(RsSegError, match="decoder_channels"):
        load_config(None, ["model.name=smp-unet", "model.decoder_channels=[8, 8]"])


def test_model_section_from_yaml():
    cfg = validate_config(yaml.safe_load("model: {name: smp-unet, encoder: resnet18}"))
    assert cfg.model.name == "smp-unet" and cfg.model.encoder == "resnet18"
    assert validate_config({"model": {"base_width": 8}}).model.name == "unet"  # name defaults to unet
    assert Config().model.name == "unet"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_config_round_trip(name):
    cfg = load_config(None, [f"model.name={name}"])
    assert cfg.model.name == name
    again = Config.model_validate(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
    assert type(again.model) is type(cfg.model)


def test_every_model_option_is_documented():
    for name, cls in model_configs().items():
        for key, info in cls.model_fields.items():
            assert info.description, f"{name}.{key} has no description"


def test_describe_models():
    rows = {row["name"]: row for row in describe_models()}
    assert set(rows) == set(MODELS)
    assert rows["smp-unet"]["options"]["encoder"] == "resnet34"
    assert rows["segformer"]["options"]["variant"] == "b0"
    assert all(row["options"]["pretrained"] is None for row in rows.values())


def test_cli_models_list():
    result = CliRunner().invoke(app, ["models", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = plain(result.output)
    for name in MODELS:
        assert name in text
    assert "encoder: resnet34" in text


def test_deeplabv3_mobilenetv3_running_stats_follow_a_short_run():
    """torchvision's MobileNetV3 BatchNorm momentum (0.01) left a short from-scratch run
    predicting one class in eval mode. After 30 train-mode passes the eval-mode map must mostly
    match the batch-statistics map (measured: 89 % at momentum 0.1, 9 % at 0.01; the rest is
    the ASPP pooling branch, whose batch statistics come from one pixel per image)."""
    torch.manual_seed(0)
    model = build_model(small_config("deeplabv3-mobilenetv3"), 3, 4)
    x = torch.randn(4, 3, 64, 64) * 3 + 2  # far from the initial running statistics (0, 1)
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()
    with torch.no_grad():
        for _ in range(30):
            batch_stats = model(x)
        model.eval()
        running = model(x)
    agreement = (batch_stats.argmax(1) == running.argmax(1)).float().mean().item()
    assert agreement >= 0.8, agreement
