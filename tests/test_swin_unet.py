"""swin-unet (seed 002): a timm Swin-T encoder under a U-Net decoder, logits at the input size
for any size, its encoder's stages, and local timm Swin-T weights for any number of bands."""

from __future__ import annotations

import pytest
import torch

from rsseg.config import load_config
from rsseg.config.model import SwinUNetConfig
from rsseg.models import build_model, count_parameters, encoder_of


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(SwinUNetConfig(decoder_channels=[32, 16, 16, 8, 8]), 4, 5).eval()


@pytest.mark.parametrize("size", [(64, 64), (67, 45), (5, 40), (100, 33)])
def test_logits_at_input_size(model, size):
    with torch.no_grad():
        assert model(torch.randn(1, 4, *size)).shape == (1, 5, *size)


def test_encoder_stages(model):
    encoder = encoder_of(model)
    with torch.no_grad():
        features = encoder(torch.randn(1, 4, 96, 64))
    assert [tuple(f.shape[1:]) for f in features] == [(96, 24, 16), (192, 12, 8), (384, 6, 4), (768, 3, 2)]
    assert 27e6 < count_parameters(encoder) < 28e6  # Swin-T without its classifier


def test_config_defaults_and_validation():
    cfg = load_config(None, ["model.name=swin-unet"]).model
    assert cfg.decoder_channels == [256, 128, 64, 32, 16] and cfg.pretrained is None
    with pytest.raises(Exception, match="decoder_channels"):
        load_config(None, ["model.name=swin-unet", "model.decoder_channels=[8, 8]"])


def test_local_timm_swin_weights_any_bands(tmp_path):
    # a timm Swin-T checkpoint (with its classifier and final norm) initialises a 6-band encoder
    torch.manual_seed(1)
    rgb = encoder_of(build_model(SwinUNetConfig(decoder_channels=[8] * 5), 3, 2)).model
    state = dict(rgb.state_dict())
    state.update({"norm.weight": torch.ones(768), "norm.bias": torch.zeros(768),
                  "head.fc.weight": torch.zeros(1000, 768), "head.fc.bias": torch.zeros(1000)})
    path = tmp_path / "swin_tiny.pth"
    torch.save({"model": state}, path)
    six = encoder_of(build_model(SwinUNetConfig(decoder_channels=[8] * 5, pretrained=str(path)), 6, 2)).eval()
    rgb.eval()
    for key, value in six.model.state_dict().items():
        if key == "patch_embed.proj.weight":
            assert torch.allclose(value, torch.cat([state[key], state[key]], 1) / 2)
        else:
            assert torch.equal(value, state[key]), key
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # two copies of RGB: the RGB encoder's features
        for a, b in zip(six(torch.cat([x, x], 1)), rgb.forward_intermediates(x, indices=4, intermediates_only=True)):
            assert torch.allclose(a, b, atol=1e-4)
