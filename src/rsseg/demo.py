"""The built-in demo: synthetic data -> training -> evaluation -> a large mapped scene.

It runs the same library functions as the CLI commands, on the packaged ``demo.yaml``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

from rsseg.errors import RsSegError
from rsseg.io import ensure_writable_dir


def demo_config_path() -> Path:
    return Path(str(resources.files("rsseg") / "configs" / "demo.yaml"))


@dataclass
class DemoSummary:
    miou: float | None
    seconds: dict[str, float] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)


def run_demo(
    out: Path,
    *,
    scene_size: int = 4096,
    train_minutes: float | None = None,
    overrides: list[str] | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> DemoSummary:
    """Run every stage into ``out`` (re-running replaces the previous demo run)."""
    # lazy: torch, Lightning and rasterio only when the demo runs; the CLI imports this module cheaply
    from rsseg.trained.checkpoint import load_predictor
    from rsseg.config import load_config
    from rsseg.data.sources import get_source
    from rsseg.data.synthetic import generate_large_scene
    from rsseg.evaluate import evaluate
    from rsseg.infer import predict_files
    from rsseg.metrics import format_metrics_table
    from rsseg.training.train import train

    console = console or Console()
    out = ensure_writable_dir(Path(out)).resolve()
    cfg = load_config(
        demo_config_path(),
        [
            f"data.root={out / 'data'}",
            f"output.dir={out / 'runs'}",
            "output.name=demo",
            *([f"train.max_minutes={train_minutes}"] if train_minutes else []),
            *(overrides or []),
        ],
    )
    summary = DemoSummary(miou=None)
    timer = time.perf_counter

    console.rule("[bold]1/4 data")
    t0 = timer()
    get_source(cfg.data).prepare(progress=progress)
    scene = out / "scene" / f"synthetic_{scene_size}.tif"
    if not scene.exists():
        with console.status(f"generating a {scene_size}x{scene_size} scene"):
            generate_large_scene(scene, size=scene_size, seed=1234)
    summary.seconds["data"] = timer() - t0

    console.rule("[bold]2/4 train")
    run_dir = Path(cfg.output.dir) / "demo"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # the demo is disposable: start from scratch every time
    t0 = timer()
    result = train(cfg, config_name="demo", progress=progress)
    summary.seconds["train"] = timer() - t0
    summary.paths["run"] = result.run_dir
    summary.paths["checkpoint"] = result.model_checkpoint

    console.rule("[bold]3/4 evaluate (held-out test scenes)")
    t0 = timer()
    ev = evaluate(result.model_checkpoint, config=cfg, split="test", progress=progress)
    summary.seconds["evaluate"] = timer() - t0
    summary.miou = ev.metrics["miou"]
    summary.paths["metrics"] = ev.metrics_path
    summary.paths["confusion"] = ev.confusion_png
    console.print(format_metrics_table(ev.metrics, title="test split"))

    console.rule(f"[bold]4/4 predict a {scene_size}x{scene_size} scene")
    t0 = timer()
    predictor = load_predictor(result.model_checkpoint, config=cfg)
    maps = predict_files(predictor, [scene], out / "predictions", show_progress=progress)[0]
    summary.seconds["predict"] = timer() - t0
    summary.paths.update({f"map {k}": v for k, v in maps.items()})

    _print_summary(console, summary, result.epochs)
    if summary.miou is None:
        raise RsSegError("demo evaluation produced no metrics")
    return summary


def _print_summary(console: Console, summary: DemoSummary, epochs: int) -> None:
    table = Table(title="rsseg demo summary", show_header=False)
    table.add_row("test mIoU", f"{summary.miou:.3f}" if summary.miou is not None else "n/a")
    table.add_row("epochs trained", str(epochs))
    for stage, secs in summary.seconds.items():
        table.add_row(f"time: {stage}", f"{secs:.1f} s")
    table.add_row("time: total", f"{sum(summary.seconds.values()):.1f} s")
    for name, path in summary.paths.items():
        table.add_row(name, str(path))
    console.print(table)
