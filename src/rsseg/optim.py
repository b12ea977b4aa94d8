"""Optimisers and learning-rate schedules by name (seed presets: SGD1, ADAM1, step LR)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

OPTIMIZERS: dict[str, Callable[[Any, Iterable[torch.nn.Parameter]], torch.optim.Optimizer]] = {
    "sgd": lambda c, p: torch.optim.SGD(p, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay),
    "adam": lambda c, p: torch.optim.Adam(p, lr=c.lr, weight_decay=c.weight_decay),
    "adamw": lambda c, p: torch.optim.AdamW(p, lr=c.lr, weight_decay=c.weight_decay),
}


def _poly(cfg: Any, opt: torch.optim.Optimizer, trainer: Any) -> dict:
    """Polynomial decay to zero over ``total_iters`` steps or epochs (default: the whole run).

    Per step (default) the LR falls smoothly; per epoch with a fixed length is the seed's
    PolynomialLR (SGD1: 20 epochs, after which the LR stays at zero).
    """
    total = cfg.total_iters
    if total is None:
        if trainer is None:
            total = 1000
        elif cfg.interval == "step":
            total = max(1, int(trainer.estimated_stepping_batches))
        else:
            total = max(1, int(trainer.max_epochs or 1))
    sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=total, power=cfg.power)
    return {"scheduler": sched, "interval": cfg.interval}


def _step(cfg: Any, opt: torch.optim.Optimizer, trainer: Any) -> dict:
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    return {"scheduler": sched, "interval": "epoch"}


SCHEDULERS: dict[str, Callable[[Any, torch.optim.Optimizer, Any], dict]] = {
    "poly": _poly,
    "step": _step,
}


def build_optimizer(cfg: Any, params: Iterable[torch.nn.Parameter], trainer: Any = None) -> dict:
    """Return Lightning's ``configure_optimizers`` dict for ``cfg`` (an ``OptimConfig``)."""
    opt = OPTIMIZERS[cfg.name](cfg, params)
    if cfg.scheduler == "none":
        return {"optimizer": opt}
    return {"optimizer": opt, "lr_scheduler": SCHEDULERS[cfg.scheduler](cfg, opt, trainer)}
