"""Model registry: a name in the config maps to a builder taking that model's config section.

Add an architecture by writing a builder ``(cfg, in_channels, num_classes) -> nn.Module`` and
registering it in ``MODELS``; its options are declared in ``rsseg.config``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from rsseg.errors import RsSegError
from rsseg.models.unet import UNet

ModelBuilder = Callable[[Any, int, int], nn.Module]


def _build_unet(cfg: Any, in_channels: int, num_classes: int) -> nn.Module:
    return UNet(in_channels, num_classes, base_width=cfg.base_width, depth=cfg.depth, up=cfg.up)


MODELS: dict[str, ModelBuilder] = {
    "unet": _build_unet,
}


def build_model(cfg: Any, in_channels: int, num_classes: int) -> nn.Module:
    """Build the network named by ``cfg.name`` with logits at the input resolution."""
    try:
        builder = MODELS[cfg.name]
    except KeyError:
        raise RsSegError(
            f"unknown model '{cfg.name}'; available: {', '.join(sorted(MODELS))}"
        ) from None
    return builder(cfg, in_channels, num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODELS", "build_model", "count_parameters"]
