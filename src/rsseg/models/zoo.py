"""Reference architectures beside the seed's U-Net, built randomly initialised (nothing
downloads; ``model.pretrained`` is applied afterwards by ``build_model``).

* ``unet-small``: the seed U-Net with widths 32-64-128-256 (seed 003).
* ``smp-unet``, ``smp-unetplusplus``, ``smp-deeplabv3plus``: segmentation-models-pytorch
  decoders on any SMP encoder (``encoder_weights=None``).
* ``deeplabv3-resnet101``, ``deeplabv3-mobilenetv3``: torchvision DeepLabv3 (no aux head),
  the first convolution rebuilt for ``in_channels != 3``.
* ``segformer``: SMP SegFormer on a MiT-b0..b5 encoder.

Every model is wrapped in :class:`PadToStride`, so logits come back as (B, K, H, W) at the
input's H and W for any input size.
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rsseg.errors import RsSegError
from rsseg.models.unet import UNet


class PadToStride(nn.Module):
    """Pad the input to a multiple of ``stride`` (reflect; replicate when the pad exceeds the
    size), run ``net``, crop the logits back, and resize them if ``net`` returns another size."""

    def __init__(self, net: nn.Module, stride: int, out_key: str | None = None) -> None:
        super().__init__()
        self.net = net
        self.stride = stride
        self.out_key = out_key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % self.stride, (-w) % self.stride
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        out = self.net(x)
        if self.out_key is not None:
            out = out[self.out_key]
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out[..., :h, :w]


# --------------------------------------------------------------------------- U-Net (small)


def build_unet_small(cfg: Any, in_channels: int, num_classes: int) -> nn.Module:
    # UNet pads to 2**depth itself; the wrapper keeps the zoo uniform (and is then a no-op)
    return PadToStride(UNet(in_channels, num_classes, base_width=32, depth=3, up=cfg.up), 8)


# --------------------------------------------------------------------------- SMP


def _smp():
    import segmentation_models_pytorch as smp

    return smp


def smp_encoder_names() -> list[str]:
    return sorted(_smp().encoders.get_encoder_names())


def _closest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=5, cutoff=0.6)
    return f"did you mean {', '.join(close)}? " if close else ""


def check_encoder(name: str) -> None:
    """An unknown SMP (or ``tu-`` timm) encoder name is an error listing the valid ones."""
    if name.startswith("tu-"):  # timm "universal" encoders: any timm model name
        import timm

        if not timm.is_model(name[3:]):
            valid = timm.list_models()
            raise RsSegError(
                f"unknown timm encoder '{name}' (tu- + a timm model name); "
                f"{_closest(name[3:], valid)}see timm.list_models() ({len(valid)} names)"
            )
        return
    valid = smp_encoder_names()
    if name not in valid:
        raise RsSegError(
            f"unknown SMP encoder '{name}'; {_closest(name, valid)}available: {', '.join(valid)}"
        )


def _smp_build(cls_name: str, cfg: Any, in_channels: int, num_classes: int, **kwargs: Any) -> nn.Module:
    check_encoder(cfg.encoder)
    cls = getattr(_smp(), cls_name)
    try:
        net = cls(
            encoder_name=cfg.encoder,
            encoder_depth=cfg.encoder_depth,
            encoder_weights=None,
            in_channels=in_channels,
            classes=num_classes,
            **kwargs,
        )
    except (KeyError, ValueError, RuntimeError) as exc:
        raise RsSegError(f"cannot build {cfg.name} with encoder '{cfg.encoder}': {exc}") from None
    return PadToStride(net, 2**cfg.encoder_depth)


def _decoder_channels(cfg: Any) -> list[int]:
    if cfg.decoder_channels is not None:
        return list(cfg.decoder_channels)
    return [256, 128, 64, 32, 16][: cfg.encoder_depth]


def build_smp_unet(cfg: Any, in_channels: int, num_classes: int) -> nn.Module:
    return _smp_build("Unet", cfg, in_channels, num_classes, decoder_channels=_decoder_channels(cfg))


def build_smp_unetplusplus(cfg: Any, in_channels: int, num_classes: int) -> nn.Module:
    return _smp_build("UnetPlusPlus", cfg, in_channels, num_classes, decoder_channels=_decoder_channels(cfg))


def build_smp_deeplabv3plus(cfg: Any, in_channels: int, num_classes: int) -> nn.Module:
    return _smp_build("DeepLabV3Plus", cfg, in_channels, num_classes, decoder_channels=cfg.decoder_channels)


def build_segformer(cfg: Any, in_channels: int, num_classes: int) -> nn.Module:
    net = _smp().Segformer(
        encoder_name=f"mit_{cfg.variant}",
        encoder_weights=None,
        in_channels=in_channels,
        classes=num_classes,
        decoder_segmentation_channels=cfg.decoder_channels,
    )
    return PadToStride(net, 32)


# --------------------------------------------------------------------------- torchvision


def _replace_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=conv.bias is not None,
    )


def build_deeplabv3_resnet101(cfg: Any, in_channels: int, num_classes: int) -> nn.Module:
    from torchvision.models.segmentation import deeplabv3_resnet101

    net = deeplabv3_resnet101(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
    if in_channels != 3:
        net.backbone.conv1 = _replace_conv(net.backbone.conv1, in_channels)
    return PadToStride(net, 8, out_key="out")  # output stride 8 (dilated ResNet)


def build_deeplabv3_mobilenetv3(cfg: Any, in_channels: int, num_classes: int) -> nn.Module:
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    net = deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False
    )
    # torchvision's MobileNetV3 uses BatchNorm momentum 0.01, tuned for long ImageNet runs. In a
    # short run from scratch the running statistics then lag the weights so far that the model
    # in eval mode predicted one class everywhere (Dubai, 8 CPU-minutes: val mIoU 0.05 at every
    # epoch, while the same weights with batch statistics predicted 3 classes). PyTorch's
    # default 0.1 follows the weights.
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.1
    if in_channels != 3:
        stem = net.backbone["0"]
        stem[0] = _replace_conv(stem[0], in_channels)
    return PadToStride(net, 16, out_key="out")  # output stride 16 (dilated last stage)


def encoder_of(model: nn.Module) -> nn.Module | None:
    """The encoder (feature extractor) of a registry model, for freezing and pretrained weights:
    ``encoder`` (seed U-Net's down path, SMP models, SegFormer's MiT, swin-unet's Swin-T) or
    ``backbone`` (torchvision DeepLabv3); None for a model without one."""
    net = model.net if isinstance(model, PadToStride) else model
    for attr in ("encoder", "backbone"):
        part = getattr(net, attr, None)
        if isinstance(part, nn.Module):
            return part
    return None


ZOO = {
    "unet-small": build_unet_small,
    "smp-unet": build_smp_unet,
    "smp-unetplusplus": build_smp_unetplusplus,
    "smp-deeplabv3plus": build_smp_deeplabv3plus,
    "deeplabv3-resnet101": build_deeplabv3_resnet101,
    "deeplabv3-mobilenetv3": build_deeplabv3_mobilenetv3,
    "segformer": build_segformer,
}
"""Builders of this module by registry name (merged into ``rsseg.models.MODELS``)."""
