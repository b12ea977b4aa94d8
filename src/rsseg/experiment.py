"""Sweeps: a grid of config overrides, each a normal run directory, then one results table.

A sweep file names a base config and the axes of the grid::

    base: dubai.yaml                 # relative to the sweep file
    name: dubai-models               # sweep folder under output.dir (default: file stem)
    set: [train.max_minutes=20]      # overrides applied to every run
    split: test                      # split the table is measured on
    grid:
      loss.name: [ce, focal, dice]   # a key and its values: runs named loss.name=ce, ...
      model:                         # or named variants, each a set of overrides
        unet: {model.name: unet}
        r34: {model.name: smp-unet, model.encoder: resnet34}

A variant's key is a dotted config path; a whole section (``model: {...}``) replaces that
section, so keys of another model type never leak in, while ``train.max_minutes: 8`` changes
one key. Runs are the cartesian product of the axes, named by their variant labels joined with
``__``. Each run trains into ``SWEEP/RUN`` and is evaluated on ``split``; its row is saved
as ``SWEEP/RUN/result.json``. Rerunning the sweep skips runs with a result, resumes runs
that have a last checkpoint but no result, and rewrites ``results.md`` / ``results.csv``.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rsseg.config import load_config
from rsseg.errors import RsSegError
from rsseg.evaluate import evaluate
from rsseg.io import atomic_write_text
from rsseg.models import count_parameters
from rsseg.report.tables import write_tables
from rsseg.trained.checkpoint import load_predictor
from rsseg.training.train import train

log = logging.getLogger(__name__)


@dataclass
class Sweep:
    path: Path
    base: Path
    name: str
    common: list[str]
    split: str
    runs: dict[str, list[str]] = field(default_factory=dict)  # run name -> overrides


def _as_override(key: str, value: Any) -> str:
    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


def _axis(name: str, spec: Any, source: Path) -> list[tuple[str, list[str]]]:
    """One grid axis -> [(label, overrides)]."""
    if isinstance(spec, list) and spec:
        return [(f"{name}={_label(v)}", [_as_override(name, v)]) for v in spec]
    if isinstance(spec, dict) and spec:
        out = []
        for label, sets in spec.items():
            if not isinstance(sets, dict):
                raise RsSegError(f"{source}: grid.{name}.{label} must map config keys to values")
            out.append((str(label), [_as_override(k, v) for k, v in sets.items()]))
        return out
    raise RsSegError(f"{source}: grid.{name} must be a non-empty list of values or mapping of variants")


def _label(value: Any) -> str:
    if isinstance(value, dict):
        return "-".join(str(v) for v in value.values())
    return str(value)


def load_sweep(path: Path) -> Sweep:
    path = Path(path)
    if not path.is_file():
        raise RsSegError(f"sweep file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RsSegError(f"{path} is not valid YAML: {exc}") from None
    unknown = set(raw) - {"base", "name", "set", "grid", "split"}
    if unknown:
        raise RsSegError(f"{path}: unknown keys {sorted(unknown)}; valid: base, name, set, grid, split")
    if "base" not in raw:
        raise RsSegError(f"{path}: `base` (the config every run starts from) is required")
    base = (path.parent / str(raw["base"])).resolve()
    if not base.is_file():
        raise RsSegError(f"{path}: base config {base} not found")
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict):
        raise RsSegError(f"{path}: `grid` must map axis names to values")
    axes = [_axis(str(k), v, path) for k, v in grid.items()] or [[("base", [])]]
    sweep = Sweep(path, base, str(raw.get("name") or path.stem), [str(s) for s in raw.get("set") or []],
                  str(raw.get("split", "test")))
    for combo in itertools.product(*axes):
        name = "__".join(label for label, _ in combo).replace("/", "-")
        sweep.runs[name] = [o for _, sets in combo for o in sets]
    return sweep


def _run_one(sweep: Sweep, name: str, overrides: list[str], out_dir: Path, progress: bool) -> dict:
    cfg = load_config(sweep.base, [*sweep.common, *overrides, f"output.dir={out_dir}", f"output.name={name}"])
    run_dir = out_dir / name
    resume = run_dir if (run_dir / "checkpoints" / "last.ckpt").exists() else None
    trained = train(cfg, config_name=name, resume=resume, progress=progress)
    ev = evaluate(trained.model_checkpoint, config=cfg, split=sweep.split, progress=progress)
    params = count_parameters(load_predictor(trained.model_checkpoint, config=cfg).model)
    metrics = ev.metrics
    row = {
        "run": name,
        "model": cfg.model.name + (f"/{cfg.model.encoder}" if hasattr(cfg.model, "encoder") else ""),
        **{k: metrics[k] for k in ("miou", "mprecision", "mrecall", "mf1", "oa")},
        "parameters": params,
        "train_minutes": _train_minutes(run_dir, trained.seconds, resume is not None),
        "epochs": trained.epochs,
        "infer_mpix_s": ev.pixels / 1e6 / ev.seconds if ev.seconds > 0 else None,
        "per_class_iou": {k: v["iou"] for k, v in metrics["per_class"].items()},
        "overrides": overrides,
        "run_dir": str(run_dir),
    }
    atomic_write_text(run_dir / "result.json", json.dumps(row, indent=2))
    return row


def _train_minutes(run_dir: Path, seconds: float, resumed: bool) -> float:
    """Training minutes, summed over interrupted and resumed sessions of the same run."""
    ledger = run_dir / "train_seconds.json"
    before = json.loads(ledger.read_text())["seconds"] if resumed and ledger.exists() else 0.0
    atomic_write_text(ledger, json.dumps({"seconds": before + seconds}))
    return (before + seconds) / 60


def run_sweep(
    path: Path,
    *,
    out: Path | None = None,
    progress: bool = True,
    on_run: Callable[[str, str], None] | None = None,
) -> tuple[list[dict], Path]:
    """Run (or resume) every run of the sweep; return the rows and the sweep folder."""
    sweep = load_sweep(path)
    base_cfg = load_config(sweep.base, sweep.common)
    out_dir = Path(out) if out else Path(base_cfg.output.dir) / sweep.name
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, failed = [], []
    for name, overrides in sweep.runs.items():
        done = out_dir / name / "result.json"
        if done.exists():
            rows.append(json.loads(done.read_text()))
            if on_run:
                on_run(name, "done before, skipped")
            continue
        if on_run:
            on_run(name, "running")
        start = time.perf_counter()
        try:
            rows.append(_run_one(sweep, name, overrides, out_dir, progress))
        except RsSegError as exc:  # one bad run must not lose the others
            log.error("run %s failed: %s", name, exc)
            failed.append(f"{name}: {exc}")
            if on_run:
                on_run(name, f"FAILED: {exc}")
            continue
        if on_run:
            on_run(name, f"finished in {(time.perf_counter() - start) / 60:.1f} min")
    write_tables(rows, out_dir, title=f"{sweep.name} ({sweep.split} split)")
    if failed:
        raise RsSegError(f"{len(failed)} of {len(sweep.runs)} runs failed:\n  " + "\n  ".join(failed))
    return rows, out_dir
