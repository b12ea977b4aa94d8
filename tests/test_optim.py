"""Optimisation presets (seed SGD1/ADAM1/step LR), schedules, early stopping and freezing."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping

from rsseg.training.callbacks import FreezeEncoder, training_callbacks
from rsseg.config import load_config
from rsseg.errors import RsSegError
from rsseg.training.optim import build_optimizer


class _Trainer:
    """The two attributes the schedules read from a Lightning trainer."""

    estimated_stepping_batches = 100
    max_epochs = 10


def _lrs(overrides: list[str], steps: int) -> list[float]:
    cfg = load_config(None, overrides)
    param = torch.nn.Parameter(torch.zeros(1))
    out = build_optimizer(cfg.optim, [param], _Trainer())
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_sgd1_preset_is_the_seed_recipe() -> None:
    cfg = load_config(None, ["optim.preset=sgd1"])
    o = cfg.optim
    assert (o.name, o.lr, o.momentum, o.weight_decay) == ("sgd", 0.006, 0.9, 1e-5)
    assert (o.scheduler, o.interval, o.total_iters, o.power) == ("poly", "epoch", 20, 1.0)
    lrs = _lrs(["optim.preset=sgd1"], 22)
    assert lrs[0] == pytest.approx(0.006)
    assert lrs[10] == pytest.approx(0.006 * (1 - 10 / 20))  # linear decay over 20 epochs
    assert lrs[20] == pytest.approx(0.0) and lrs[21] == pytest.approx(0.0)


def test_adam1_preset_decays_with_power_two_over_the_run() -> None:
    cfg = load_config(None, ["optim.preset=adam1"])
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.power) == ("adam", 0.005, 2.0)
    lrs = _lrs(["optim.preset=adam1"], 10)  # max_epochs 10, per epoch
    assert lrs[5] == pytest.approx(0.005 * (1 - 5 / 10) ** 2)


def test_preset_keys_you_set_win() -> None:
    cfg = load_config(None, ["optim.preset=sgd1", "optim.lr=0.01", "optim.total_iters=5"])
    assert cfg.optim.lr == 0.01 and cfg.optim.total_iters == 5 and cfg.optim.momentum == 0.9


def test_step15_preset_and_default_poly_per_step() -> None:
    lrs = _lrs(["optim.preset=step15", "optim.lr=1.0"], 31)  # StepLR counts scheduler steps
    assert lrs[14] == pytest.approx(1.0) and lrs[15] == pytest.approx(0.1) and lrs[30] == pytest.approx(0.01)
    per_step = _lrs(["optim.lr=1.0"], 51)  # default: poly 0.9 over estimated_stepping_batches
    assert per_step[50] == pytest.approx((1 - 50 / 100) ** 0.9)


def test_unknown_preset_is_a_config_error() -> None:
    with pytest.raises(RsSegError, match="optim.preset"):
        load_config(None, ["optim.preset=sgd2"])


def test_early_stopping_and_freeze_callbacks_from_config() -> None:
    from rsseg.models import build_model

    cfg = load_config(None, ["train.early_stopping={patience: 3, min_delta: 0.01}", "train.freeze_encoder=2"])
    model = build_model(cfg.model, 3, 4)
    callbacks = training_callbacks(cfg, model)
    stop = next(c for c in callbacks if isinstance(c, EarlyStopping))
    assert stop.monitor == "val_miou" and stop.patience == 3 and stop.mode == "max"
    freeze = next(c for c in callbacks if isinstance(c, FreezeEncoder))
    assert freeze.epochs == 2 and freeze._frozen(1) and not freeze._frozen(2)
    defaults = training_callbacks(load_config(None, []), model)
    assert defaults == []  # nothing by default; the non-finite stop is in every run (rsseg.training.base)
    with pytest.raises(RsSegError, match="freeze_encoder"):
        load_config(None, ["train.freeze_encoder=-1"])


def test_freeze_keeps_encoder_weights_and_batchnorm_statistics(tiny_config_path) -> None:
    """Frozen encoder: bit-identical to its initial state after training; the rest learned.

    Training seeds torch before building the model and draws nothing random before it, so
    a model built right after the same seeding is the run's initial model.
    """
    import lightning as L

    from rsseg.trained.checkpoint import read_checkpoint
    from rsseg.models import build_model, encoder_of
    from rsseg.training.train import train

    cfg = load_config(tiny_config_path, ["train.freeze_encoder=true", "output.name=frozen"])
    result = train(cfg, config_name="frozen", progress=False)
    state = read_checkpoint(result.last_checkpoint)["state_dict"]
    trained = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}

    L.seed_everything(cfg.train.seed, verbose=False)
    initial = build_model(cfg.model, 3, 7)
    encoder_keys = {f"{name}" for name in _qualified_encoder_keys(initial, encoder_of(initial))}
    assert encoder_keys, "the encoder has no tensors"
    initial_state = initial.state_dict()
    for key in encoder_keys:
        assert torch.equal(trained[key], initial_state[key]), f"frozen encoder tensor {key} changed"
    others = [k for k in initial_state if k not in encoder_keys and initial_state[k].is_floating_point()]
    assert any(not torch.equal(trained[k], initial_state[k]) for k in others), "nothing was trained"


def _qualified_encoder_keys(model: torch.nn.Module, encoder: torch.nn.Module) -> list[str]:
    prefix = next(name for name, module in model.named_modules() if module is encoder)
    return [f"{prefix}.{k}" if prefix else k for k in encoder.state_dict()]


class _FakeTimer:
    """Lightning's Timer as the time schedule reads it: a duration and the elapsed seconds."""

    def __init__(self, duration: float) -> None:
        self._duration, self.elapsed = duration, 0.0

    def time_elapsed(self, stage: str = "train") -> float:
        return self.elapsed


def test_time_interval_decays_the_lr_to_zero_over_the_wall_clock_budget(monkeypatch) -> None:
    import lightning.pytorch.callbacks as cbs

    monkeypatch.setattr(cbs, "Timer", _FakeTimer)  # the schedule looks the Timer up by type
    cfg = load_config(None, ["train.max_minutes=1", "optim.interval=time", "optim.power=2",
                             "optim.lr=1.0"])
    timer = _FakeTimer(60.0)
    trainer = type("T", (), {"callbacks": [timer]})()
    param = torch.nn.Parameter(torch.zeros(1))
    out = build_optimizer(cfg.optim, [param], trainer)
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    assert out["lr_scheduler"]["interval"] == "step"
    for elapsed, want in [(15.0, 0.75**2), (30.0, 0.25), (90.0, 0.0)]:
        timer.elapsed = elapsed
        opt.step()
        sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(want)


def test_time_interval_without_a_budget_is_refused() -> None:
    with pytest.raises(RsSegError, match="max_minutes"):
        load_config(None, ["optim.interval=time"])


def test_time_schedule_trains_end_to_end_and_logs_a_falling_lr(tiny_config_path) -> None:
    """With Lightning's real Timer: the run trains, and the logged LR falls below the start."""
    import csv

    from rsseg.training.train import train

    cfg = load_config(tiny_config_path, ["train.max_minutes=5", "train.epochs=2",
                                         "optim.interval=time", "output.name=timed",
                                         "train.log_every_n_steps=1"])
    result = train(cfg, config_name="timed", progress=False)
    assert result.last_checkpoint.exists()
    rows = list(csv.DictReader((result.run_dir / "logs" / "metrics.csv").open()))
    lrs = [float(r["lr"]) for r in rows if r.get("lr")]
    assert lrs and all(0 < lr < cfg.optim.lr for lr in lrs[1:])


def test_run_progress_follows_the_lr_schedule_measure(monkeypatch) -> None:
    import lightning.pytorch.callbacks as cbs

    from rsseg.training.optim import run_progress

    monkeypatch.setattr(cbs, "Timer", _FakeTimer)
    timed = load_config(None, ["train.max_minutes=1", "optim.interval=time"]).optim
    timer = _FakeTimer(60.0)
    timer.elapsed = 15.0
    assert run_progress(timed, type("T", (), {"callbacks": [timer]})()) == pytest.approx(0.25)
    timer.elapsed = 120.0
    assert run_progress(timed, type("T", (), {"callbacks": [timer]})()) == 1.0
    stepped = load_config(None, ["optim.interval=step"]).optim
    trainer = type("T", (), {"global_step": 30, "estimated_stepping_batches": 120})()
    assert run_progress(stepped, trainer) == pytest.approx(0.25)


def test_class_weight_fade_trains_end_to_end_and_logs_a_falling_power(tiny_config_path) -> None:
    """The fade runs inside training: the logged class-weight power starts at 1 and falls."""
    import csv

    from rsseg.training.train import train

    cfg = load_config(tiny_config_path, ["train.epochs=2", "optim.interval=step", "output.name=faded",
                                         "loss.class_weights=median", "loss.class_weight_final_power=0",
                                         "train.log_every_n_steps=1"])
    result = train(cfg, config_name="faded", progress=False)
    rows = list(csv.DictReader((result.run_dir / "logs" / "metrics.csv").open()))
    powers = [float(r["class_weight_power"]) for r in rows if r.get("class_weight_power")]
    assert powers[0] == pytest.approx(1.0) and powers[-1] < powers[0]
    assert powers == sorted(powers, reverse=True)


def test_encoder_lr_scale_gives_the_encoder_its_share_of_the_lr_all_run() -> None:
    from rsseg.models import build_model, encoder_of
    from rsseg.training.optim import encoder_lr_groups

    cfg = load_config(None, ["optim.preset=adam1", "optim.lr=0.01", "optim.encoder_lr_scale=0.1"])
    model = build_model(cfg.model, 3, 4)
    encoder = encoder_of(model)
    groups = encoder_lr_groups(cfg.optim, model, encoder)
    ids = [{id(p) for p in g["params"]} for g in groups]
    assert ids[1] == {id(p) for p in encoder.parameters()} and ids[0].isdisjoint(ids[1])
    assert ids[0] | ids[1] == {id(p) for p in model.parameters()} and ids[0]
    out = build_optimizer(cfg.optim, groups, _Trainer())
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    for epoch in range(9):
        rest, enc = (g["lr"] for g in opt.param_groups)
        assert rest == pytest.approx(0.01 * (1 - epoch / 10) ** 2)  # adam1: poly, power 2, per epoch (of 10)
        assert enc == pytest.approx(0.1 * rest)
        opt.step()
        sched.step()


def test_encoder_lr_scale_reaches_the_trained_optimiser(tiny_config_path) -> None:
    from rsseg.safe_load import read_lightning_checkpoint
    from rsseg.training.callbacks import find_encoder
    from rsseg.training.train import train

    cfg = load_config(tiny_config_path, ["optim.encoder_lr_scale=0.25", "optim.scheduler=constant",
                                         "train.epochs=1", "output.name=enc-lr"])
    result = train(cfg, config_name="enc-lr", progress=False)
    groups = read_lightning_checkpoint(result.last_checkpoint)["optimizer_states"][0]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([cfg.optim.lr, 0.25 * cfg.optim.lr])
    with pytest.raises(RsSegError, match="'conv' has no separate encoder: optim.encoder_lr_scale"):
        find_encoder(torch.nn.Conv2d(3, 4, 1), "conv", "optim.encoder_lr_scale")
    with pytest.raises(RsSegError, match="encoder_lr_scale"):
        load_config(None, ["optim.encoder_lr_scale=0"])
