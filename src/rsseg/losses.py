"""Loss registry. Every loss honours ``ignore_index`` (unlabelled and ignored classes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rsseg.classes import IGNORE_INDEX
from rsseg.errors import RsSegError

LossBuilder = Callable[[Any, int], nn.Module]


def _cross_entropy(cfg: Any, num_classes: int) -> nn.Module:
    weight = None
    if cfg.class_weights is not None:
        if len(cfg.class_weights) != num_classes:
            raise RsSegError(
                f"loss.class_weights has {len(cfg.class_weights)} values for {num_classes} classes"
            )
        weight = torch.tensor(cfg.class_weights, dtype=torch.float32)
    return nn.CrossEntropyLoss(
        weight=weight, ignore_index=IGNORE_INDEX, label_smoothing=cfg.label_smoothing
    )


LOSSES: dict[str, LossBuilder] = {
    "ce": _cross_entropy,
}


def build_loss(cfg: Any, num_classes: int) -> nn.Module:
    try:
        builder = LOSSES[cfg.name]
    except KeyError:
        raise RsSegError(f"unknown loss '{cfg.name}'; available: {', '.join(sorted(LOSSES))}") from None
    return builder(cfg, num_classes)
