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
    if cfg.interval == "time":
        return _poly_over_budget(cfg, opt, trainer)
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


def _budget_timer(trainer: Any) -> Any:
    from lightning.pytorch.callbacks import Timer

    timers = [cb for cb in getattr(trainer, "callbacks", []) if isinstance(cb, Timer)]
    if not timers or timers[0]._duration is None:
        raise ValueError("optim.interval 'time' needs a wall-clock budget: set train.max_minutes")
    return timers[0]


def _poly_over_budget(cfg: Any, opt: torch.optim.Optimizer, trainer: Any) -> dict:
    """Polynomial decay to zero over the wall-clock budget ``train.max_minutes``.

    Why: under a fixed CPU budget the number of epochs that fit depends on the model and the
    machine, so a schedule in epochs either ends early or never decays. Here the LR reaches zero
    when the budget ends (Lightning's Timer, which survives a resume). The price: runs depend on
    wall-clock speed and are not bit-reproducible.
    """
    timer = _budget_timer(trainer)

    def factor(_: int) -> float:
        done = min(timer.time_elapsed("train") / timer._duration, 1.0)
        return (1.0 - done) ** cfg.power

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return {"scheduler": sched, "interval": "step"}


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
