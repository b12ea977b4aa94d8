"""Non-finite values: a NaN/inf loss or gradient stops training (issue 16); NaN/inf pixels
of a float scene are nodata at prediction."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from typer.testing import CliRunner

from rsseg.cli import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _poisoned_loss(monkeypatch, *, at_call: int, gradient: bool = False) -> None:
    """The task's loss, made NaN (or given a NaN gradient) from its ``at_call``-th training call
    on (validation calls do not count): what NaN imagery or a diverging run produce."""
    import rsseg.train

    real = rsseg.train.build_loss
    calls = []

    def build(*args, **kwargs):
        loss_fn = real(*args, **kwargs)

        def poisoned(logits, masks):
            if torch.is_grad_enabled():
                calls.append(1)
                if len(calls) >= at_call:
                    if gradient:  # finite loss, NaN gradient
                        logits.register_hook(lambda g: g * float("nan"))
                    else:
                        return loss_fn(logits, masks) * float("nan")
            return loss_fn(logits, masks)

        return poisoned

    monkeypatch.setattr(rsseg.train, "build_loss", build)


def _train(config: Path, name: str, *extra: str):
    args = ["train", str(config), "--set", "train.epochs=2", "--set", f"output.name={name}"]
    return CliRunner().invoke(app, [*args, *[a for s in extra for a in ("--set", s)]], env={"COLUMNS": "1000"})


def _all_finite(ckpt: Path) -> bool:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def test_nan_loss_stops_training_and_keeps_the_good_checkpoint(tiny_config_path, monkeypatch):
    # 8 chips, batch 4: 2 steps an epoch; the 3rd training loss (epoch 1, step 2) is NaN
    _poisoned_loss(monkeypatch, at_call=3)
    result = _train(tiny_config_path, "nan-loss")
    run_dir = tiny_config_path.parent / "runs" / "nan-loss"
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert "epoch 1, step 2" in line and "the loss is nan" in line and str(run_dir) in line
    assert "last.ckpt is the last good checkpoint" in line and "Traceback" not in result.output
    ckpts = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    assert [p.name for p in ckpts] == ["best.ckpt", "last.ckpt"]
    for p in ckpts:  # written after epoch 0, never with the NaN step's weights
        assert _all_finite(p)
        assert torch.load(p, map_location="cpu", weights_only=False)["global_step"] == 2
    assert not (run_dir / "report.html").exists()
    assert not list(run_dir.rglob(".*.tmp*"))


def test_nan_gradient_at_the_first_step_leaves_no_checkpoint(tiny_config_path, monkeypatch):
    _poisoned_loss(monkeypatch, at_call=1, gradient=True)
    result = _train(tiny_config_path, "nan-grad")
    run_dir = tiny_config_path.parent / "runs" / "nan-grad"
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert "epoch 0, step 0" in line and "the gradient of model." in line and "is not finite" in line
    assert "no checkpoint was written" in line and str(run_dir) in line
    assert not list(run_dir.rglob("*.ckpt"))
    assert not (run_dir / "report.html").exists()
