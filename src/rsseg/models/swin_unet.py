"""Swin-UNet (seed 002): a Swin-T encoder from timm under a convolutional U-Net decoder.

The encoder is timm's ``swin_tiny_patch4_window7_224`` (random init, any number of bands),
built with ``strict_img_size=False`` so its attention masks follow the input size; the
classifier head and the final norm are pruned, so its state-dict names are timm's own and a
local timm Swin-T checkpoint loads as is (``pretrained:``). The decoder upsamples the
stride-32 features step by step, concatenating the stride-16/8/4 features (U-Net skips), then
two more steps without skips back to the input resolution. :class:`PadToStride` pads inputs
to a multiple of 32, so any H, W works (windows that do not fit are padded by timm).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rsseg.models.unet import _double_conv
from rsseg.models.zoo import PadToStride

SWIN_VARIANT = "swin_tiny_patch4_window7_224"


class SwinEncoder(nn.Module):
    """timm Swin-T returning its four stage outputs (NCHW, strides 4, 8, 16, 32)."""

    def __init__(self, in_channels: int, drop_path_rate: float = 0.1) -> None:
        super().__init__()
        import timm

        model = timm.create_model(
            SWIN_VARIANT,
            pretrained=False,
            in_chans=in_channels,
            num_classes=0,
            strict_img_size=False,
            drop_path_rate=drop_path_rate,
        )
        model.prune_intermediate_layers(indices=4, prune_norm=True, prune_head=True)
        self.model = model
        self.out_channels = [info["num_chs"] for info in model.feature_info]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_intermediates(x, indices=4, intermediates_only=True)

    def convert_pretrained(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Original (Microsoft) Swin checkpoints -> timm names, as timm converts them."""
        from timm.models.swin_transformer import checkpoint_filter_fn

        anchor = "patch_embed.proj.weight"
        prefix = next((k[: -len(anchor)] for k in state if k.endswith(anchor)), None)
        if prefix is None:
            return state  # not a Swin checkpoint: the loader reports what does not fit
        inner = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        return {prefix + k: v for k, v in checkpoint_filter_fn(inner, self.model).items()}


class _UpBlock(nn.Module):
    def __init__(self, c_in: int, c_skip: int, c_out: int) -> None:
        super().__init__()
        self.conv = _double_conv(c_in + c_skip, c_out)

    def forward(self, x: torch.Tensor, size: tuple[int, int], skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


class SwinUNet(nn.Module):
    """Swin-T encoder + U-Net decoder; ``decoder_channels`` has five widths (strides 16..1)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__()
        if len(decoder_channels) != 5:
            raise ValueError("swin-unet needs five decoder widths (strides 16, 8, 4, 2, 1)")
        self.encoder = SwinEncoder(in_channels, drop_path_rate)
        skips = self.encoder.out_channels[-2::-1] + [0, 0]  # 384, 192, 96, then none
        widths = [self.encoder.out_channels[-1], *decoder_channels]
        self.decoder = nn.ModuleList(
            _UpBlock(widths[i], skips[i], widths[i + 1]) for i in range(len(decoder_channels))
        )
        self.head = nn.Conv2d(decoder_channels[-1], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        features = self.encoder(x)
        y = features.pop()
        for block in self.decoder:
            skip = features.pop() if features else None
            size = skip.shape[-2:] if skip is not None else (y.shape[-2] * 2, y.shape[-1] * 2)
            y = block(y, tuple(size), skip)
        if y.shape[-2:] != (h, w):
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        return self.head(y)


def build_swin_unet(cfg: Any, in_channels: int, num_classes: int) -> nn.Module:
    net = SwinUNet(
        in_channels,
        num_classes,
        decoder_channels=tuple(cfg.decoder_channels),
        drop_path_rate=cfg.drop_path_rate,
    )
    return PadToStride(net, 32)
