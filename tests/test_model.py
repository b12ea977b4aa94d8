import pytest
import torch

from rsseg.config import UNetConfig
from rsseg.errors import RsSegError
from rsseg.models import build_model, count_parameters


@pytest.mark.parametrize("up", ["transpose", "bilinear"])
@pytest.mark.parametrize("size", [(64, 64), (75, 130)])
def test_unet_logits_at_input_size(up, size):
    model = build_model(UNetConfig(base_width=4, depth=3, up=up), in_channels=5, num_classes=7)
    out = model(torch.randn(2, 5, *size))
    assert out.shape == (2, 7, *size)


def test_unet_seed_width_matches_paper_size():
    # seed 000 Table 1 lists ~33M parameters for its U-Net (base width 64, depth 4)
    model = build_model(UNetConfig(base_width=64, depth=4), in_channels=3, num_classes=16)
    assert 30e6 < count_parameters(model) < 34e6


def test_unet_has_batchnorm_and_transpose_upsampling():
    model = build_model(UNetConfig(base_width=4, depth=2), in_channels=3, num_classes=2)
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"BatchNorm2d", "ConvTranspose2d"} <= kinds


def test_unknown_model_name():
    class Fake:
        name = "nope"

    with pytest.raises(RsSegError, match="unknown model 'nope'"):
        build_model(Fake(), 3, 2)
