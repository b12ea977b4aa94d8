"""Sweeps: a grid of config overrides, each a normal run directory, then results tables.

A sweep file names a base config and the axes of the grid::

    base: dubai.yaml                 # relative to the sweep file
    name: dubai-models               # sweep folder under output.dir (default: file stem)
    set: [train.max_minutes=20]      # overrides applied to every run
    split: test                      # split the table is measured on
    seeds: [0, 1]                    # each run once per seed (train.seed); summary.md: mean and spread
    parallel: 2                      # runs side by side, each pinned to its own share of the cores
    evaluate:                        # how each run is measured (default: its model, predict's defaults)
      - {checkpoint: best, mode: reference}
      - {checkpoint: last, mode: whole, tta: true}
    grid:
      loss.name: [ce, focal, dice]   # a key and its values: runs named loss.name=ce, ...
      model:                         # or named variants, each a set of overrides
        unet: {model.name: unet}
        r34: {model.name: smp-unet, model.encoder: resnet34}

A variant's key is a dotted config path; a whole section (``model: {...}``) replaces that
section, so keys of another model type never leak in, while ``train.max_minutes: 8`` changes
one key. Runs are the cartesian product of the axes, named by their variant labels joined with
``__`` (plus ``__seed=N`` with ``seeds``). Every run's config is validated before the first
one trains, so a typo in the last variant fails at once, naming the sweep file and the run.
Each run trains into ``SWEEP/RUN`` and is evaluated on ``split`` once per ``evaluate`` entry
(``checkpoint``: ``model`` = the one ``train.select`` chose, ``best`` or ``last``; ``mode``: a
prediction mode, null = the checkpoint's ``infer.mode``; ``tta``: D4 test-time augmentation);
its rows are saved as ``SWEEP/RUN/result.json``. Rerunning the sweep skips runs with a result,
resumes runs that have a last checkpoint but no result, and rewrites ``results.md`` /
``results.csv`` (one row per run and evaluation; failed runs are listed as failed) and, with
seeds, ``summary.md`` (one row per variant: the mean and spread over seeds).

Why ``parallel``: on a many-core CPU, two 1-thread runs side by side share the machine's
state (load, thermal, memory bandwidth) at the same moment, which makes their comparison
fairer than runs an hour apart; each child process is pinned to ``cores / parallel`` cores
and gets that many threads unless ``train.threads`` says otherwise.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rsseg.config import load_config
from rsseg.errors import RsSegError
from rsseg.evaluate import evaluate
from rsseg.infer.windows import MODES
from rsseg.io import atomic_write_text
from rsseg.models import count_parameters
from rsseg.report.tables import write_summary, write_tables
from rsseg.safe_load import read_lightning_checkpoint
from rsseg.trained.checkpoint import load_predictor
from rsseg.training.train import train

log = logging.getLogger(__name__)

SWEEP_KEYS = ("base", "name", "set", "grid", "split", "seeds", "parallel", "evaluate")
#: ``evaluate: [{checkpoint: ...}]``: which weights of a run are measured
CHECKPOINTS = ("model", "best", "last")
#: A child run's error message, for the parent's table (its console output wraps long lines)
FAILED = "failed.txt"


@dataclass(frozen=True)
class EvalSpec:
    """One measurement of a run: which checkpoint, in which prediction mode, with or without TTA."""

    checkpoint: str = "model"
    mode: str | None = None
    tta: bool = False

    @property
    def label(self) -> str:
        return f"{self.checkpoint}/{self.mode or 'default'}{'+tta' if self.tta else ''}"


@dataclass
class Sweep:
    path: Path
    base: Path
    name: str
    common: list[str]
    split: str
    runs: dict[str, list[str]] = field(default_factory=dict)  # run name -> overrides
    arms: dict[str, str] = field(default_factory=dict)  # run name -> variant label (without the seed)
    evaluations: list[EvalSpec] = field(default_factory=lambda: [EvalSpec()])
    parallel: int = 1


def _as_override(key: str, value: Any) -> str:
    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


def _axis(name: str, spec: Any, source: Path) -> list[tuple[str, list[str]]]:
    """One grid axis -> [(label, overrides)]."""
    if isinstance(spec, list) and spec:
        return [(f"{name}={_label(v)}", [_as_override(name, v)]) for v in spec]
    if isinstance(spec, dict) and spec:
        out = []
        for label, sets in spec.items():
            if sets is None:  # a variant that is the base itself: `default: {}` or `default:`
                sets = {}
            if not isinstance(sets, dict):
                raise RsSegError(f"{source}: grid.{name}.{label} must map config keys to values")
            out.append((str(label), [_as_override(k, v) for k, v in sets.items()]))
        return out
    raise RsSegError(f"{source}: grid.{name} must be a non-empty list of values or mapping of variants")


def _label(value: Any) -> str:
    if isinstance(value, dict):
        return "-".join(str(v) for v in value.values())
    return str(value)


def _eval_specs(raw: Any, source: Path) -> list[EvalSpec]:
    if raw is None:
        return [EvalSpec()]
    if not isinstance(raw, list) or not raw:
        raise RsSegError(f"{source}: `evaluate` must be a non-empty list of {{checkpoint, mode, tta}}")
    specs = []
    for k, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) - {"checkpoint", "mode", "tta"}:
            raise RsSegError(f"{source}: evaluate[{k}] must map checkpoint / mode / tta to values, got {item!r}")
        spec = EvalSpec(str(item.get("checkpoint", "model")), item.get("mode"), bool(item.get("tta", False)))
        if spec.checkpoint not in CHECKPOINTS:
            raise RsSegError(f"{source}: evaluate[{k}].checkpoint '{spec.checkpoint}' is not one of "
                             f"{', '.join(CHECKPOINTS)}")
        if spec.mode is not None and spec.mode not in MODES:
            raise RsSegError(f"{source}: evaluate[{k}].mode '{spec.mode}' is not one of {', '.join(MODES)}")
        specs.append(spec)
    return specs


def _seeds(raw: Any, source: Path) -> list[int] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw or not all(isinstance(s, int) for s in raw) or len(set(raw)) != len(raw):
        raise RsSegError(f"{source}: `seeds` must be a list of distinct integers, got {raw!r}")
    return raw


def load_sweep(path: Path) -> Sweep:
    path = Path(path)
    if not path.is_file():
        raise RsSegError(f"sweep file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RsSegError(f"{path} is not valid YAML: {exc}") from None
    unknown = set(raw) - set(SWEEP_KEYS)
    if unknown:
        raise RsSegError(f"{path}: unknown keys {sorted(unknown)}; valid: {', '.join(SWEEP_KEYS)}")
    if "base" not in raw:
        raise RsSegError(f"{path}: `base` (the config every run starts from) is required")
    base = (path.parent / str(raw["base"])).resolve()
    if not base.is_file():
        raise RsSegError(f"{path}: base config {base} not found")
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict):
        raise RsSegError(f"{path}: `grid` must map axis names to values")
    parallel = raw.get("parallel", 1)
    if not isinstance(parallel, int) or parallel < 1:
        raise RsSegError(f"{path}: `parallel` must be a positive integer, got {parallel!r}")
    axes = [_axis(str(k), v, path) for k, v in grid.items()] or [[("base", [])]]
    sweep = Sweep(path, base, str(raw.get("name") or path.stem), [str(s) for s in raw.get("set") or []],
                  str(raw.get("split", "test")), evaluations=_eval_specs(raw.get("evaluate"), path),
                  parallel=parallel)
    seeds = _seeds(raw.get("seeds"), path)
    for combo in itertools.product(*axes):
        arm = "__".join(label for label, _ in combo).replace("/", "-")
        overrides = [o for _, sets in combo for o in sets]
        for seed in seeds or [None]:
            name = arm if seed is None else f"{arm}__seed={seed}"
            sweep.runs[name] = overrides if seed is None else [*overrides, f"train.seed={seed}"]
            sweep.arms[name] = arm
    return sweep


def validate_sweep(sweep: Sweep) -> None:
    """Every run's config loads (keys exist, values valid) before anything trains."""
    for name, overrides in sweep.runs.items():
        try:
            load_config(sweep.base, [*sweep.common, *overrides])
        except RsSegError as exc:
            raise RsSegError(f"{sweep.path}: run '{name}': {exc}") from None


def _steps(run_dir: Path) -> int | None:
    """Optimiser steps of a run: the global step saved in its last checkpoint."""
    path = run_dir / "checkpoints" / "last.ckpt"
    return int(read_lightning_checkpoint(path).get("global_step", 0)) if path.exists() else None


def _checkpoint(trained: Any, spec: EvalSpec) -> Path:
    if spec.checkpoint == "model":
        return Path(trained.model_checkpoint)
    return Path(trained.run_dir) / "checkpoints" / f"{spec.checkpoint}.ckpt"


def _run_one(sweep: Sweep, name: str, overrides: list[str], out_dir: Path, progress: bool) -> list[dict]:
    cfg = load_config(sweep.base, [*sweep.common, *overrides, f"output.dir={out_dir}", f"output.name={name}"])
    run_dir = out_dir / name
    resume = run_dir if (run_dir / "checkpoints" / "last.ckpt").exists() else None
    trained = train(cfg, config_name=name, resume=resume, progress=progress)
    minutes = _train_minutes(run_dir, trained.seconds, resume is not None)
    rows = []
    for spec in sweep.evaluations:
        ckpt = _checkpoint(trained, spec)
        label = spec.label.replace("/", "-").replace("+", "-")
        ev = evaluate(ckpt, config=cfg, split=sweep.split, progress=progress, mode=spec.mode, tta=spec.tta,
                      out=None if len(sweep.evaluations) == 1 else run_dir / f"eval-{sweep.split}-{label}")
        metrics = ev.metrics
        rows.append({
            "run": name,
            "arm": sweep.arms.get(name, name),
            "seed": cfg.train.seed,
            # which weights and prediction mode (a column only when a sweep measures runs several ways)
            "eval": None if len(sweep.evaluations) == 1 else
            f"{spec.checkpoint}/{metrics.get('mode', spec.mode)}{'+tta' if spec.tta else ''}",
            "model": cfg.model.name + (f"/{cfg.model.encoder}" if hasattr(cfg.model, "encoder") else ""),
            **{k: metrics[k] for k in ("miou", "mprecision", "mrecall", "mf1", "oa")},
            "parameters": count_parameters(load_predictor(ckpt, config=cfg).model),
            "train_minutes": minutes,
            "epochs": trained.epochs,
            "steps": _steps(run_dir),
            "infer_mpix_s": ev.pixels / 1e6 / ev.seconds if ev.seconds > 0 else None,
            "per_class_iou": {k: v["iou"] for k, v in metrics["per_class"].items()},
            "overrides": overrides,
            "run_dir": str(run_dir),
            "checkpoint": str(ckpt),
        })
    atomic_write_text(run_dir / "result.json", json.dumps({"rows": rows}, indent=2))
    return rows


def read_result(run_dir: Path) -> list[dict]:
    """The rows of a finished run (``result.json``; a single-row file of older sweeps too)."""
    data = json.loads((run_dir / "result.json").read_text())
    return data["rows"] if isinstance(data, dict) and "rows" in data else [data]


def _train_minutes(run_dir: Path, seconds: float, resumed: bool) -> float:
    """Training minutes, summed over interrupted and resumed sessions of the same run."""
    ledger = run_dir / "train_seconds.json"
    before = json.loads(ledger.read_text())["seconds"] if resumed and ledger.exists() else 0.0
    atomic_write_text(ledger, json.dumps({"seconds": before + seconds}))
    return (before + seconds) / 60


def core_slots(parallel: int, cores: list[int] | None = None) -> list[list[int] | None]:
    """``parallel`` disjoint groups of this process's cores (None = unpinned when too few)."""
    cores = sorted(os.sched_getaffinity(0)) if cores is None else cores
    share = len(cores) // parallel
    if share < 1:
        return [None] * parallel
    return [cores[k * share:(k + 1) * share] for k in range(parallel)]


def _child(sweep: Sweep, name: str, out_dir: Path, cores: list[int] | None) -> subprocess.Popen:
    """``rsseg experiment SWEEP --only NAME`` in a process pinned to ``cores``."""
    env = dict(os.environ)
    if cores:
        env["OMP_NUM_THREADS"] = str(len(cores))  # torch's default thread count follows it
    log_path = out_dir / name / "experiment.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    (out_dir / name / FAILED).unlink(missing_ok=True)
    cmd = [sys.executable, "-c", "from rsseg.cli import main; main()", "experiment", str(sweep.path),
           "--out", str(out_dir), "--only", name, "--no-progress"]
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    with log_path.open("ab") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, preexec_fn=pin)


def _failure(run_dir: Path, code: int) -> str:
    """Why a child run failed: the message it wrote to ``failed.txt``, else its exit code."""
    path = run_dir / FAILED
    return path.read_text().strip() if path.exists() else f"exit code {code} (see {run_dir / 'experiment.log'})"


def _run_parallel(sweep: Sweep, names: list[str], out_dir: Path,
                  on_run: Callable[[str, str], None] | None) -> tuple[dict[str, list[dict]], dict[str, str]]:
    pending, running = list(names), {}  # slot index -> (name, process, start)
    slots = core_slots(sweep.parallel)
    done: dict[str, list[dict]] = {}
    failed: dict[str, str] = {}
    while pending or running:
        for slot in range(len(slots)):
            if slot not in running and pending:
                name = pending.pop(0)
                if on_run:
                    on_run(name, f"running (cores {slots[slot] or 'any'})")
                running[slot] = (name, _child(sweep, name, out_dir, slots[slot]), time.perf_counter())
        time.sleep(1.0)
        for slot, (name, proc, start) in list(running.items()):
            code = proc.poll()
            if code is None:
                continue
            del running[slot]
            if code == 0 and (out_dir / name / "result.json").exists():
                done[name] = read_result(out_dir / name)
                if on_run:
                    on_run(name, f"finished in {(time.perf_counter() - start) / 60:.1f} min")
            else:
                failed[name] = _failure(out_dir / name, code)
                if on_run:
                    on_run(name, f"FAILED: {failed[name]}")
    return done, failed


def run_sweep(
    path: Path,
    *,
    out: Path | None = None,
    progress: bool = True,
    on_run: Callable[[str, str], None] | None = None,
    only: list[str] | None = None,
) -> tuple[list[dict], Path]:
    """Run (or resume) every run of the sweep; return the rows and the sweep folder.

    ``only``: just these runs, no tables (a child of a ``parallel`` sweep)."""
    sweep = load_sweep(path)
    validate_sweep(sweep)
    unknown = sorted(set(only or []) - set(sweep.runs))
    if unknown:
        raise RsSegError(f"{sweep.path}: no run named {', '.join(unknown)}; runs: {', '.join(sweep.runs)}")
    base_cfg = load_config(sweep.base, sweep.common)
    out_dir = Path(out) if out else Path(base_cfg.output.dir) / sweep.name
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {}
    failed: dict[str, str] = {}
    todo = []
    for name in only or sweep.runs:
        if (out_dir / name / "result.json").exists():
            results[name] = read_result(out_dir / name)
            if on_run:
                on_run(name, "done before, skipped")
        else:
            todo.append(name)
    if sweep.parallel > 1 and not only:
        done, failed = _run_parallel(sweep, todo, out_dir, on_run)
        results.update(done)
    else:
        for name in todo:
            if on_run:
                on_run(name, "running")
            start = time.perf_counter()
            try:
                results[name] = _run_one(sweep, name, sweep.runs[name], out_dir, progress)
            except RsSegError as exc:  # one bad run must not lose the others
                log.error("run %s failed: %s", name, exc)
                failed[name] = str(exc)
                if only:  # a child of a parallel sweep: the parent reads the reason from here
                    (out_dir / name).mkdir(parents=True, exist_ok=True)
                    atomic_write_text(out_dir / name / FAILED, str(exc))
                if on_run:
                    on_run(name, f"FAILED: {exc}")
                continue
            if on_run:
                on_run(name, f"finished in {(time.perf_counter() - start) / 60:.1f} min")
    rows = [row for name in sweep.runs if name in results for row in results[name]]
    if only:
        if failed:
            raise RsSegError(f"run {', '.join(failed)} failed: {'; '.join(failed.values())}")
        return rows, out_dir
    table = rows + [{"run": name, "arm": sweep.arms[name], "status": f"failed: {why}"} for name, why in failed.items()]
    write_tables(table, out_dir, title=f"{sweep.name} ({sweep.split} split)")
    if any(n != a for n, a in sweep.arms.items()):  # seeds: mean and spread per variant
        write_summary(table, out_dir, title=f"{sweep.name} ({sweep.split} split, mean over seeds)")
    if failed:
        raise RsSegError(f"{len(failed)} of {len(sweep.runs)} runs failed:\n  "
                         + "\n  ".join(f"{n}: {w}" for n, w in failed.items()))
    return rows, out_dir
