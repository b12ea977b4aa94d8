"""Training levers of the ablation (issue 18): random crops, ImageNet statistics, LR schedules
with warm-up, EMA weights, the selected checkpoint and the budget check."""

from __future__ import annotations

import math

import pytest
import torch

from rsseg.config import load_config
from rsseg.data.sources import get_source
from rsseg.errors import RsSegError
from rsseg.runtime import training_hardware
from rsseg.trained.checkpoint import load_predictor, read_checkpoint
from rsseg.training.optim import build_optimizer, lr_factor
from rsseg.training.train import train


def _source(tiny_config_path, overrides=()):
    cfg = load_config(tiny_config_path, list(overrides))
    source = get_source(cfg.data)
    source.prepare(progress=False)
    return cfg, source


def _windows(dataset, n):
    out = []
    for i in range(n):
        torch.manual_seed(i)
        out.append(dataset.window(i % len(dataset)))
    return out


def test_random_crop_stays_inside_the_scene_and_leaves_the_grid(tiny_config_path) -> None:
    cfg, source = _source(tiny_config_path, ["data.crop=random", "data.tile_size=64"])
    ds = source.tile_dataset(source.scenes("train"), train=True)
    grid = {(ds.chips[i].scene, ds.chips[i].row, ds.chips[i].col) for i in range(len(ds))}
    windows = _windows(ds, 200)
    for scene, window in windows:
        h, w = ds.shapes[ds.scenes.index(scene)]
        assert 0 <= window.row_off <= h - 64 and 0 <= window.col_off <= w - 64
    origins = {(ds.scenes.index(s), w.row_off, w.col_off) for s, w in windows}
    assert len(origins - grid) > 100  # anywhere, not on the grid (+-random_shift would stay near it)
    assert max(w.row_off for _, w in windows) > 192 - 64 - 20  # reaches the far edge too
    val = source.tile_dataset(source.scenes("val"))  # validation stays on the grid
    assert all((w.row_off, w.col_off) == (val.chips[i].row, val.chips[i].col)
               for i, (_, w) in enumerate(_windows(val, len(val))))


def test_grid_crop_keeps_todays_reads(tiny_config_path) -> None:
    cfg, source = _source(tiny_config_path, ["data.random_shift=0"])
    ds = source.tile_dataset(source.scenes("train"), train=True)
    assert cfg.data.crop == "grid"
    assert all((w.row_off, w.col_off) == (ds.chips[i].row, ds.chips[i].col)
               for i, (_, w) in enumerate(_windows(ds, len(ds))))


def test_imagenet_normalization_scales_to_8_bit(tiny_config_path) -> None:
    _, source = _source(tiny_config_path, ["data.normalization=imagenet"])
    ds = source.tile_dataset(source.scenes("train"), train=True)
    assert ds.mean == pytest.approx([0.485 * 255, 0.456 * 255, 0.406 * 255])
    assert ds.std == pytest.approx([0.229 * 255, 0.224 * 255, 0.225 * 255])
    explicit = source.tile_dataset(source.scenes("train"), train=True, mean=[1, 2, 3], std=[4, 5, 6])
    assert explicit.mean == [1, 2, 3]  # data.mean/std win
    dataset = get_source(load_config(tiny_config_path).data).tile_dataset(source.scenes("train"), train=True)
    assert dataset.mean != ds.mean  # the default: the scenes' own statistics


def test_imagenet_normalization_refuses_other_band_counts(tiny_config_path) -> None:
    _, source = _source(tiny_config_path, ["data.normalization=imagenet", "data.bands=[1, 2]"])
    with pytest.raises(RsSegError, match="data.normalization: imagenet needs 3 bands"):
        source.tile_dataset(source.scenes("train"), train=True)


def _cfg(sched: str, **extra):
    return load_config(None, [f"optim.scheduler={sched}", *(f"optim.{k}={v}" for k, v in extra.items())]).optim


@pytest.mark.parametrize(("sched", "extra", "points"), [
    ("poly", {"power": 2.0}, [(0.0, 1.0), (0.5, 0.25), (1.0, 0.0)]),
    ("cosine", {}, [(0.0, 1.0), (0.25, 0.5 * (1 + math.cos(math.pi / 4))), (0.5, 0.5), (1.0, 0.0)]),
    ("constant", {}, [(0.0, 1.0), (0.7, 1.0), (1.0, 1.0)]),
    ("wsd", {}, [(0.0, 1.0), (0.8, 1.0), (0.9, 0.5), (1.0, 0.0)]),
    ("wsd", {"decay_fraction": 0.5}, [(0.5, 1.0), (0.75, 0.5)]),
    ("constant", {"warmup": 0.1}, [(0.0, 0.0), (0.05, 0.5), (0.1, 1.0), (0.9, 1.0)]),
    ("cosine", {"warmup": 0.2}, [(0.0, 0.0), (0.1, 0.5 * 0.5 * (1 + math.cos(math.pi * 0.1))), (1.0, 0.0)]),
    ("wsd", {"warmup": 0.1}, [(0.05, 0.5), (0.5, 1.0), (0.9, 0.5)]),
])
def test_schedule_factor_curves(sched, extra, points) -> None:
    cfg = _cfg(sched, **extra)
    for progress, want in points:
        assert lr_factor(cfg, progress) == pytest.approx(want), (sched, extra, progress)


class _Trainer:
    estimated_stepping_batches = 100
    max_epochs = 10


def _lrs(cfg, steps):
    param = torch.nn.Parameter(torch.zeros(1))
    out = build_optimizer(cfg, [param], _Trainer())
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_step_interval_follows_the_factor_over_the_run() -> None:
    cfg = _cfg("wsd", lr=1.0, warmup=0.1)
    lrs = _lrs(cfg, 101)
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[50] == pytest.approx(1.0)
    assert lrs[90] == pytest.approx(0.5) and lrs[100] == pytest.approx(0.0)


def test_poly_without_warmup_is_still_torchs_polynomial_lr() -> None:
    cfg = _cfg("poly", lr=0.01)
    out = build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(1))], _Trainer())
    assert isinstance(out["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.PolynomialLR)


@pytest.mark.parametrize(("overrides", "message"), [
    (["optim.scheduler=step", "optim.warmup=0.1"], "warmup"),  # step decay has no warm-up
    (["optim.scheduler=cosine", "optim.interval=time"], "max_minutes"),  # a time schedule needs a budget
    (["optim.scheduler=onecycle", "optim.warmup=0.1"], "onecycle has its own warm-up"),
    (["train.ema=0.99", "train.swa=0.25"], "train.ema and train.swa"),  # one weight average at a time
])
def test_contradictory_levers_are_refused(overrides, message) -> None:
    with pytest.raises(RsSegError, match=message):
        load_config(None, overrides)


def _model_state(path):
    return {k: v for k, v in read_checkpoint(path)["state_dict"].items() if k.startswith("model.")}


def test_ema_checkpoints_hold_the_average_and_evaluate_loads_it(tiny_config_path, tmp_path) -> None:
    from rsseg.metrics import ConfusionMatrix
    from rsseg.training.train import SegmentationTask

    cfg = load_config(tiny_config_path, [f"output.dir={tmp_path}", "output.name=ema", "train.ema=0.9",
                                         "train.epochs=2", "optim.lr=0.01"])
    result = train(cfg, config_name="ema", progress=False)
    for path in (result.best_checkpoint, result.last_checkpoint):
        ckpt = read_checkpoint(path)
        ema, raw = ckpt["state_dict"], ckpt["current_model_state"]  # raw: what a resume goes on from
        assert ckpt["averaging_state"]["n_averaged"] == ckpt["global_step"]
        assert any(not torch.equal(ema[k], raw[k]) for k in ema if ema[k].is_floating_point()), path
    # evaluate/predict load the average
    predictor = load_predictor(result.best_checkpoint, device=torch.device("cpu"))
    loaded = predictor.model.state_dict()
    for key, value in _model_state(result.best_checkpoint).items():
        assert torch.equal(loaded[key.removeprefix("model.")].float(), value.float()), key
    # validation scored the average: best.ckpt's validation counts are the EMA weights' counts
    ckpt = read_checkpoint(result.best_checkpoint)
    hp = ckpt["hyper_parameters"]
    _, source = _source(tiny_config_path)
    val = source.tile_dataset(source.scenes("val"), mean=hp["mean"], std=hp["std"])

    hw = training_hardware(cfg.train)  # validation ran in the run's precision (bf16 where native)

    def counts(state: dict) -> list:
        task = SegmentationTask(**{k: hp[k] for k in ("config", "classes", "mean", "std", "bands")},
                                channels_last=hw.channels_last)
        task.load_state_dict(state, strict=False)
        task.eval()
        confusion = ConfusionMatrix(task.classes.num_classes)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=hw.bf16):
            for images, masks in torch.utils.data.DataLoader(val, batch_size=4):
                confusion.update(task(images).argmax(1), masks)
        return confusion.matrix.tolist()

    assert counts(ckpt["state_dict"]) == ckpt["val_confusion"]
    assert counts(ckpt["current_model_state"]) != ckpt["val_confusion"]  # the raw weights score otherwise


def test_select_last_makes_the_final_weights_the_model(tiny_config_path, tmp_path) -> None:
    cfg = load_config(tiny_config_path, [f"output.dir={tmp_path}", "output.name=last", "train.select=last"])
    result = train(cfg, config_name="last", progress=False)
    assert result.model_checkpoint == result.last_checkpoint != result.best_checkpoint
    best = load_config(tiny_config_path, [f"output.dir={tmp_path}", "output.name=best"])
    assert train(best, config_name="best", progress=False).model_checkpoint.name == "best.ckpt"


def test_a_budget_too_short_for_one_validation_is_refused(tiny_config_path, tmp_path) -> None:
    cfg = load_config(tiny_config_path, [f"output.dir={tmp_path}", "output.name=short", "train.max_minutes=1e-5"])
    with pytest.raises(RsSegError, match=r"short: train.max_minutes=1e-05 .* ends before the first validation, "
                                         r"estimated at .* training batches x"):
        train(cfg, config_name="short", progress=False)
    assert not (tmp_path / "short" / "checkpoints" / "last.ckpt").exists()


def test_ema_resume_goes_on_from_the_raw_weights(tiny_config_path, tmp_path) -> None:
    """A resumed EMA run ends where the uninterrupted one does: last.ckpt keeps the raw weights."""
    # a constant LR: a poly schedule over 1 epoch would differ from one over 2 without any EMA
    sets = [f"output.dir={tmp_path}", "train.ema=0.9", "optim.lr=0.01", "optim.scheduler=constant"]
    whole = train(load_config(tiny_config_path, [*sets, "output.name=whole", "train.epochs=2"]), progress=False)
    first = train(load_config(tiny_config_path, [*sets, "output.name=part", "train.epochs=1"]), progress=False)
    resumed = train(load_config(tiny_config_path, [*sets, "output.name=part", "train.epochs=2"]),
                    resume=first.run_dir, progress=False)
    a, b = read_checkpoint(whole.last_checkpoint), read_checkpoint(resumed.last_checkpoint)
    for key in ("state_dict", "current_model_state"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key


def test_onecycle_rises_from_a_25th_then_anneals_to_zero() -> None:
    cfg = _cfg("onecycle")
    for progress, want in [(0.0, 0.04), (0.15, 0.52), (0.3, 1.0), (0.65, 0.5), (1.0, 0.0)]:
        assert lr_factor(cfg, progress) == pytest.approx(want), progress
    lrs = _lrs(_cfg("onecycle", lr=1.0), 101)
    assert lrs.index(max(lrs)) == 30 and lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_swa_is_the_equal_average_of_the_final_share_of_steps() -> None:
    """Exact: with 10 optimiser steps and swa=0.5 (step clock), the model after training is the
    mean of the weights after steps 5..10; until the window opens validation sees the weights."""
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    from rsseg.training.callbacks import SWA

    class Task(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(3, 1)

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def validation_step(self, batch, _):
            seen.append((self.trainer.global_step, self.net.weight.detach().clone()))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class Record(Callback):
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            weights.append(pl_module.net.weight.detach().clone())

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(20, 3), torch.randn(20, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    weights, seen = [], []
    swa = SWA(0.5, load_config(None, ["optim.interval=step"]).optim)
    trainer = L.Trainer(max_epochs=1, callbacks=[Record(), swa], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, val_check_interval=3,
                        num_sanity_val_steps=0, limit_val_batches=1, accelerator="cpu")
    task = Task()
    trainer.fit(task, loader, loader)
    assert len(weights) == 10 and swa.averaged == 6
    assert torch.allclose(task.net.weight, torch.stack(weights[4:]).mean(0), atol=1e-6)
    by_step = dict(seen)
    assert torch.equal(by_step[3], weights[2])  # step 3: before the window, the weights themselves
    assert torch.allclose(by_step[6], torch.stack(weights[4:6]).mean(0), atol=1e-6)  # steps 5-6 averaged


def test_swa_run_checkpoints_hold_the_average(tiny_config_path, tmp_path) -> None:
    cfg = load_config(tiny_config_path, [f"output.dir={tmp_path}", "output.name=swa", "train.swa=0.5",
                                         "train.epochs=2", "optim.lr=0.01", "optim.interval=step"])
    result = train(cfg, config_name="swa", progress=False)
    ckpt = read_checkpoint(result.last_checkpoint)
    average, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert any(not torch.equal(average[k], raw[k]) for k in average if average[k].is_floating_point())
    averaged = ckpt["callbacks"][next(k for k in ckpt["callbacks"] if k.startswith("SWA"))]["averaged"]
    assert 0 < averaged < ckpt["global_step"]


def test_gradient_accumulation_takes_one_step_per_n_batches(tiny_config_path, tmp_path) -> None:
    steps = {}
    for n in (1, 2):
        cfg = load_config(tiny_config_path, [f"output.dir={tmp_path}", f"output.name=acc{n}", "train.epochs=2",
                                             f"train.accumulate_grad_batches={n}"])
        steps[n] = read_checkpoint(train(cfg, config_name=f"acc{n}", progress=False).last_checkpoint)["global_step"]
    assert steps[1] == 2 * steps[2] and steps[2] >= 2
