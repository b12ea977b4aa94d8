"""Optimisers and learning-rate schedules by name (seed presets: SGD1, ADAM1, step LR; cosine, wsd, one-cycle, warm-up)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

OPTIMIZERS: dict[str, Callable[[Any, Iterable[torch.nn.Parameter]], torch.optim.Optimizer]] = {
    "sgd": lambda c, p: torch.optim.SGD(p, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay),
    "adam": lambda c, p: torch.optim.Adam(p, lr=c.lr, weight_decay=c.weight_decay),
    "adamw": lambda c, p: torch.optim.AdamW(p, lr=c.lr, weight_decay=c.weight_decay),
}


def _poly_factor(cfg: Any, p: float) -> float:
    return (1.0 - p) ** cfg.power


def _cosine_factor(cfg: Any, p: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * p))


def _constant_factor(cfg: Any, p: float) -> float:
    return 1.0


def _wsd_factor(cfg: Any, p: float) -> float:
    """Warm-up-stable-decay: constant, then linear to zero over the last ``decay_fraction``."""
    return min(1.0, (1.0 - p) / cfg.decay_fraction)


def _onecycle_factor(cfg: Any, p: float) -> float:
    """Smith's one-cycle LR shape with torch ``OneCycleLR``'s defaults: up from lr/25 to lr over
    the first 30 % of the run, then down to zero, both halves cosine-shaped. Only the LR cycles:
    Adam's beta1 is left alone (torch cycles it too; rsseg keeps one optimiser setting per run)."""
    rise, floor = 0.3, 1.0 / 25.0
    if p < rise:
        return floor + (1.0 - floor) * 0.5 * (1.0 - math.cos(math.pi * p / rise))
    return 0.5 * (1.0 + math.cos(math.pi * (p - rise) / (1.0 - rise)))


#: schedule name -> (OptimConfig, run progress in [0, 1]) -> LR factor; optim.warmup multiplies in
FACTORS: dict[str, Callable[[Any, float], float]] = {
    "poly": _poly_factor,
    "cosine": _cosine_factor,
    "constant": _constant_factor,
    "wsd": _wsd_factor,
    "onecycle": _onecycle_factor,
}


def lr_factor(cfg: Any, progress: float) -> float:
    """The LR factor of ``cfg.scheduler`` at ``progress`` (clipped to [0, 1]), warm-up included.

    The warm-up ramps linearly from 0 and multiplies the schedule, so the curve stays continuous.
    """
    p = min(max(progress, 0.0), 1.0)
    ramp = min(1.0, p / cfg.warmup) if cfg.warmup > 0 else 1.0
    return ramp * FACTORS[cfg.scheduler](cfg, p)


def _total(cfg: Any, trainer: Any) -> int:
    """Schedule length in scheduler steps: total_iters, else the run's steps or epochs."""
    if cfg.total_iters is not None:
        return cfg.total_iters
    if trainer is None:
        return 1000
    if cfg.interval == "step":
        return max(1, int(trainer.estimated_stepping_batches))
    return max(1, int(trainer.max_epochs or 1))


def run_progress(cfg: Any, trainer: Any) -> float:
    """The share of the run done, in [0, 1], measured as ``cfg`` (an ``OptimConfig``) measures it
    for its LR schedule: wall-clock budget spent (``interval: time``), steps or epochs done.

    Why one owner: whatever else follows the run's course (the class-weight fade) must end
    exactly when the LR schedule does.
    """
    if cfg.interval == "time":
        timer = _budget_timer(trainer)
        done = timer.time_elapsed("train") / timer._duration
    elif cfg.interval == "step":
        done = trainer.global_step / _total(cfg, trainer)
    else:
        done = trainer.current_epoch / _total(cfg, trainer)
    return min(max(done, 0.0), 1.0)


def _progress(cfg: Any, opt: torch.optim.Optimizer, trainer: Any) -> dict:
    """poly/cosine/constant/wsd as ``lr_factor`` of the run's progress: steps or epochs done
    out of the total, or with ``interval: time`` the share of the wall-clock budget spent.

    Poly without warm-up per step/epoch stays torch's PolynomialLR (bit-identical to the
    seed's schedule).
    """
    if cfg.interval == "time":
        return _over_budget(cfg, opt, trainer)
    total = _total(cfg, trainer)
    if cfg.scheduler == "poly" and cfg.warmup == 0:
        sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=total, power=cfg.power)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(cfg, i / total))
    return {"scheduler": sched, "interval": cfg.interval}


def _budget_timer(trainer: Any) -> Any:
    from lightning.pytorch.callbacks import Timer  # lazy: Lightning only when a budget schedule is built

    timers = [cb for cb in getattr(trainer, "callbacks", []) if isinstance(cb, Timer)]
    if not timers or timers[0]._duration is None:
        raise ValueError("optim.interval 'time' needs a wall-clock budget: set train.max_minutes")
    return timers[0]


def _over_budget(cfg: Any, opt: torch.optim.Optimizer, trainer: Any) -> dict:
    """The schedule over the wall-clock budget ``train.max_minutes``.

    Why: under a fixed CPU budget the number of epochs that fit depends on the model and the
    machine, so a schedule in epochs either ends early or never decays. Here the schedule ends
    when the budget ends (Lightning's Timer, which survives a resume). The price: runs depend on
    wall-clock speed and are not bit-reproducible.
    """
    _budget_timer(trainer)  # refuse a missing budget now, not at the first step

    def factor(_: int) -> float:
        return lr_factor(cfg, run_progress(cfg, trainer))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return {"scheduler": sched, "interval": "step"}


def _step(cfg: Any, opt: torch.optim.Optimizer, trainer: Any) -> dict:
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    return {"scheduler": sched, "interval": "epoch"}


SCHEDULERS: dict[str, Callable[[Any, torch.optim.Optimizer, Any], dict]] = {
    **{name: _progress for name in FACTORS},
    "step": _step,
}


def encoder_lr_groups(cfg: Any, model: torch.nn.Module, encoder: torch.nn.Module) -> list[dict]:
    """Two parameter groups: the decoder and head at ``lr`` (first: the group whose LR is logged),
    the encoder at ``lr x encoder_lr_scale``.

    Why: a pretrained encoder already holds good features, the decoder and head start from
    random; the schedules multiply each group's own initial LR, so the ratio holds all run.
    """
    own = {id(p) for p in encoder.parameters()}
    params = list(model.parameters())
    return [{"params": [p for p in params if id(p) not in own]},
            {"params": [p for p in params if id(p) in own], "lr": cfg.lr * cfg.encoder_lr_scale}]


def build_optimizer(cfg: Any, params: Iterable[torch.nn.Parameter] | list[dict], trainer: Any = None) -> dict:
    """Return Lightning's ``configure_optimizers`` dict for ``cfg`` (an ``OptimConfig``); ``params``
    are parameters or torch parameter groups (``encoder_lr_groups``)."""
    opt = OPTIMIZERS[cfg.name](cfg, params)
    if cfg.scheduler == "none":
        return {"optimizer": opt}
    return {"optimizer": opt, "lr_scheduler": SCHEDULERS[cfg.scheduler](cfg, opt, trainer)}
