"""BatchNorm folded into convolutions for the ``fast`` mode: the same function, a copy."""

from __future__ import annotations

import torch
from torch import nn

from rsseg.infer.fuse import fold_batchnorm
from rsseg.models.unet import UNet


def _trained_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))
    return model.eval()


def _norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_folded_unet_computes_the_same_function_on_a_copy():
    torch.manual_seed(0)
    model = _trained_stats(UNet(3, 5, base_width=8, depth=3))
    x = torch.randn(2, 3, 72, 88)
    with torch.inference_mode():
        before = model(x)
    folded = fold_batchnorm(model)
    assert _norms(folded) == 0 and _norms(model) > 0  # the original keeps its module tree
    assert fold_batchnorm(model) is folded  # cached: one copy per model
    with torch.inference_mode():
        after = folded(x)
        again = model(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert torch.equal(again, before)  # the original's weights were not touched
    assert (after.argmax(1) == before.argmax(1)).float().mean() > 0.999


def test_only_sequential_pairs_are_folded():
    """Attributes say nothing about the order ``forward`` uses them in: left alone."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.bn(torch.cat([x, x], 1))[:, :3])

    model = nn.Sequential(Block(), nn.Conv2d(3, 3, 1), nn.ReLU(), nn.BatchNorm2d(3))
    folded = fold_batchnorm(model)
    assert _norms(folded) == _norms(model) == 2


def test_conv_without_bias_gets_the_norms_shift_and_indices_stay():
    seq = _trained_stats(nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU()))
    seq.train()
    x = torch.randn(1, 3, 9, 9)
    folded = fold_batchnorm(seq)
    assert not folded.training  # folding is only valid in eval mode
    assert isinstance(folded[1], nn.Identity) and isinstance(folded[2], nn.ReLU)
    assert folded[0].bias is not None
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), seq.eval()(x), rtol=1e-5, atol=1e-5)
