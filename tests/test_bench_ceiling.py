"""``benchmarks/ceiling.py``: the numbers behind the README's a/c ceiling are measured, not typed."""

import torch
from torch import nn

from tools import bench_module


def _ceiling():
    return bench_module("ceiling")


def test_flops_per_pixel_counts_every_convolution(tiny_run):
    """Against a count by hand: 2 x output elements x (input channels x kernel area) per
    Conv2d, 2 x input elements x (output channels x kernel area) per ConvTranspose2d."""
    from rsseg.trained.checkpoint import load_predictor

    ceiling = _ceiling()
    model = load_predictor(tiny_run.best_checkpoint).model.eval()
    side, total = 64, 0

    def count(module, inputs, output):
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):
            total += 2 * inputs[0].numel() * module.out_channels * k // module.groups
        else:
            total += 2 * output.numel() * module.in_channels * k // module.groups

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.inference_mode():
        model(torch.zeros(1, len(load_predictor(tiny_run.best_checkpoint).mean), side, side))
    for h in hooks:
        h.remove()
    assert total > 0
    assert abs(ceiling.flops_per_pixel(tiny_run.best_checkpoint, side) - total / side**2) < 1e-6 * total


def test_gemm_peaks_are_measured():
    ceiling = _ceiling()
    assert ceiling.fp32_peak(96, 1) > 0.01
    assert ceiling.int8_peak(96, 1) > 0.01
