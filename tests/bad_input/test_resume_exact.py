"""A run killed with SIGKILL and resumed with ``--resume`` ends with exactly the same model.

Run A trains N epochs uninterrupted; run B is a ``rsseg train`` subprocess killed with
SIGKILL once epoch K's ``last.ckpt`` exists, then resumed through the CLI. Weights,
optimiser step and every validation metric must be bit-identical.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import WeightedRandomSampler
from typer.testing import CliRunner

from rsseg.cli import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EPOCHS, KILL_AFTER = 3, 1  # kill once epoch 1 (0-based) is checkpointed

#: every source of randomness in training: shuffling by the weighted class-aware sampler,
#: random shift, D4 and albumentations noise, read in a persistent DataLoader worker (which
#: prefetches before Lightning's set_epoch); plus a per-epoch LR schedule and a time budget
#: that is not reached
CONFIG = """\
data:
  root: {root}
  synthetic: {{train: 2, val: 1, test: 1, size: 192, seed: 3}}
  tile_size: 96
  batch_size: 2
  random_shift: 16
  num_workers: 1
  augment: {{d4: true, noise: {{p: 0.5}}}}
  sampling: {{threshold: 0.9, mode: weighted}}
model: {{base_width: 4, depth: 2}}
train: {{epochs: {epochs}, threads: 1, max_minutes: 600}}
optim: {{lr: 0.01, scheduler: step, step_size: 1, gamma: 0.7}}
output: {{dir: {runs}, name: {name}}}
"""


def _config(base: Path, data_root: Path, name: str) -> Path:
    path = base / f"{name}.yaml"
    path.write_text(CONFIG.format(root=data_root, runs=base / "runs", name=name, epochs=EPOCHS))
    return path


def _checkpoint_epoch(path: Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])
    except Exception:  # not there yet, or being replaced
        return None


def _train_and_kill(config: Path, last: Path) -> None:
    """``rsseg train`` in a subprocess, SIGKILLed right after epoch KILL_AFTER's checkpoint."""
    proc = subprocess.Popen([sys.executable, "-c", "from rsseg.cli import app; app()", "train", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            epoch = _checkpoint_epoch(last) if last.exists() else None
            if epoch is not None and epoch >= KILL_AFTER:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        _, err = proc.communicate(timeout=60)
    # killed mid-run, not finished or crashed: otherwise the test proves nothing
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert _checkpoint_epoch(last) < EPOCHS


def _val_metrics(run_dir: Path) -> dict[int, dict[str, str]]:
    """epoch -> validation metrics from logs/metrics.csv (rows logged twice must agree)."""
    out: dict[int, dict[str, str]] = {}
    with (run_dir / "logs" / "metrics.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("val_miou"):
                values = {k: v for k, v in row.items() if k.startswith("val_")}
                assert out.setdefault(int(row["epoch"]), values) == values, f"epoch {row['epoch']} logged twice, differently"
    return out


def _assert_same_run(run_a: Path, run_b: Path) -> None:
    """Same epoch, step, weights (last and best) and validation metrics; plain-data checkpoints."""
    ckpt_a, ckpt_b = (torch.load(r / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
                      for r in (run_a, run_b))
    assert (ckpt_a["epoch"], ckpt_a["global_step"]) == (ckpt_b["epoch"], ckpt_b["global_step"])
    assert ckpt_a["state_dict"].keys() == ckpt_b["state_dict"].keys()
    differ = [k for k, v in ckpt_a["state_dict"].items() if not torch.equal(v, ckpt_b["state_dict"][k])]
    assert not differ, f"weights differ after the resume: {differ[:5]}"
    metrics_a, metrics_b = _val_metrics(run_a), _val_metrics(run_b)
    assert sorted(metrics_a) == list(range(EPOCHS))
    assert metrics_a == metrics_b
    best_a, best_b = (torch.load(r / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
                      for r in (run_a, run_b))
    assert all(torch.equal(v, best_b[k]) for k, v in best_a.items())
    assert ckpt_b["callbacks"]["EpochSeeds"] == {"seed": 0}  # the seed the randomness derives from


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_config_path) -> tuple[Path, Path]:
    """(folder for the configs, run directory of the uninterrupted run A)."""
    base = tmp_path_factory.mktemp("resume")
    result = CliRunner().invoke(app, ["train", str(_config(base, tiny_config_path.parent / "data", "a"))])
    assert result.exit_code == 0, result.output
    return base, base / "runs" / "a"


def test_killed_and_resumed_run_ends_with_the_same_model(uninterrupted, tiny_config_path):
    base, run_a = uninterrupted
    b = _config(base, tiny_config_path.parent / "data", "b")
    run_b = base / "runs" / "b"
    _train_and_kill(b, run_b / "checkpoints" / "last.ckpt")
    result = CliRunner().invoke(app, ["train", str(b), "--resume", str(run_b)])
    assert result.exit_code == 0, result.output
    _assert_same_run(run_a, run_b)


class _Draws:
    """A dataset whose items are draws from the process's generators."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> tuple[float, float, float]:
        return torch.rand(1).item(), float(np.random.rand()), random.random()


def test_epoch_draws_depend_on_seed_epoch_and_position_only():
    from rsseg.data.seeding import EpochSampler, SeededDraws

    sampler = EpochSampler(WeightedRandomSampler(torch.ones(4, dtype=torch.double), 6), 4, seed=5)
    sampler.set_epoch(3)
    first = list(sampler)
    torch.manual_seed(123)  # the process's generator plays no part
    assert list(sampler) == first and len(first) == len(sampler) == 6
    sampler.set_epoch(4)
    assert list(sampler) != first

    draws = SeededDraws(_Draws())
    before = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    assert draws[(2, 99)] == draws[(3, 99)] != draws[(2, 98)]
    after = torch.get_rng_state(), np.random.get_state()[1], random.getstate()
    assert torch.equal(before[0], after[0]) and (before[1] == after[1]).all() and before[2] == after[2]
