"""Encoder features of any registry model, its stride, and its signature (which models share it).

SSL and the linear probe need the encoder's multi-scale features without the decoder, but the
registry's encoders differ in what calling them returns (SMP/MiT/Swin: a list; torchvision: an
OrderedDict; the seed U-Net's encoder is a ModuleList driven by ``UNet.encode``). This module
hides that, so pretraining and probing work for every model ``encoder_of`` knows.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rsseg.errors import RsSegError
from rsseg.models.unet import UNet
from rsseg.models.zoo import PadToStride, encoder_of


def _pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % stride, (-w) % stride
    if not (pad_h or pad_w):
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def model_stride(model: nn.Module) -> int:
    """The multiple the model pads its inputs to (its encoder's total stride)."""
    net = model.net if isinstance(model, PadToStride) else model
    stride = model.stride if isinstance(model, PadToStride) else 1
    return max(stride, 2**net.depth) if isinstance(net, UNet) else stride


def pad_to_stride(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return _pad(x, model_stride(model))


def encoder_features(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Feature maps of the model's encoder, finest first (SMP's identity stage left out).

    The input is padded to the model's stride first, as the model itself would.
    """
    net = model.net if isinstance(model, PadToStride) else model
    stride = model_stride(model)
    if isinstance(net, UNet):
        return net.encode(_pad(x, stride))
    encoder = encoder_of(model)
    if encoder is None:
        raise RsSegError(f"model {type(net).__name__} has no separate encoder to pretrain or probe")
    out: Any = encoder(_pad(x, stride))
    if isinstance(out, dict):
        out = list(out.values())
    elif isinstance(out, torch.Tensor):
        out = [out]
    feats = [f for f in out if isinstance(f, torch.Tensor) and f.ndim == 4 and f.shape[1] > 0]
    if len(feats) > 1 and feats[0].shape[1] == x.shape[1] and feats[0].shape[-2:] == _pad(x, stride).shape[-2:]:
        feats = feats[1:]  # SMP encoders return the input itself as stage 0
    if not feats:
        raise RsSegError(f"the encoder of {type(net).__name__} returned no feature maps")
    return feats


def feature_widths(model: nn.Module, in_channels: int, size: int = 64) -> list[int]:
    """Channels of each ``encoder_features`` stage (one dry run, weights and mode untouched)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            feats = encoder_features(model, torch.zeros(2, in_channels, size, size))
    finally:
        model.train(was_training)
    return [f.shape[1] for f in feats]


def pooled_embedding(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, C) global average of the last (coarsest) encoder stage: the tile's representation."""
    return encoder_features(model, x)[-1].float().mean(dim=(2, 3))


# --------------------------------------------------------------------------- which encoder


def encoder_signature(model_cfg: Any) -> dict[str, Any]:
    """What determines the encoder's tensors (models with equal signatures share encoders)."""
    name = model_cfg.name
    if name == "unet":
        return {"family": "unet", "base_width": model_cfg.base_width, "depth": model_cfg.depth}
    if name == "unet-small":
        return {"family": "unet", "base_width": 32, "depth": 3}
    if name.startswith("smp-"):
        return {"family": "smp", "encoder": model_cfg.encoder, "encoder_depth": model_cfg.encoder_depth}
    if name == "segformer":
        return {"family": "smp", "encoder": f"mit_{model_cfg.variant}", "encoder_depth": 5}
    if name == "swin-unet":
        return {"family": "swin-t"}
    return {"family": name}  # torchvision DeepLabv3 backbones and future models: one each


def describe_signature(sig: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sig.items())
