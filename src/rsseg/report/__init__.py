"""Self-contained HTML run reports and run comparisons.

``write_report(run_dir)`` gathers what a run directory holds (config, Lightning's CSV log,
the best checkpoint, ``eval-*/metrics.json``, ``timings.json``) into ``report.html`` with
every figure inlined as a data URI, so the file can be mailed or archived alone. Training
writes it at the end; ``rsseg evaluate`` rewrites it with the test metrics; ``rsseg report``
regenerates it. ``write_comparison`` puts several runs into one table plus per-class IoU
box plots (seed 000 Fig. 18).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

from rsseg.errors import RsSegError
from rsseg.io import atomic_write_text
from rsseg.report.figures import (
    curves_png,
    iou_bars_png,
    iou_boxplot_png,
    legend_html,
    priors_png,
    read_epoch_history,
)
from rsseg.report.page import esc, img, metrics_table, page, section
from rsseg.report.tables import results_table, write_tables

log = logging.getLogger(__name__)


def record_timing(run_dir: Path, **seconds: float) -> None:
    """Merge named durations (seconds) into ``RUN/timings.json``."""
    path = Path(run_dir) / "timings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update({k: float(v) for k, v in seconds.items()})
    atomic_write_text(path, json.dumps(data, indent=2))


def _latest_eval(run_dir: Path) -> tuple[str, dict, Path] | None:
    """(split, metrics, folder) of the test evaluation, else the newest other one."""
    found = sorted(run_dir.glob("eval-*/metrics.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        return None
    test = [p for p in found if p.parent.name == "eval-test"]
    chosen = (test or found)[-1]
    return chosen.parent.name.removeprefix("eval-"), json.loads(chosen.read_text()), chosen.parent


def _checkpoint(run_dir: Path) -> Path | None:
    for name in ("best.ckpt", "last.ckpt"):
        if (run_dir / "checkpoints" / name).exists():
            return run_dir / "checkpoints" / name
    return None


def _class_counts(predictor, source, run_dir: Path) -> list[int] | None:
    """Training-split class pixel counts, cached in ``RUN/class_priors.json``."""
    cache = run_dir / "class_priors.json"
    if cache.exists():
        return json.loads(cache.read_text())["counts"]
    try:
        # lazy: rasterio, only when the class priors are not cached
        from rsseg.data.priors import split_class_counts

        counts = [int(c) for c in split_class_counts(source, "train", predictor.classes.num_classes)]
    except RsSegError as exc:
        log.warning("class priors unavailable: %s", exc)
        return None
    atomic_write_text(cache, json.dumps({"counts": counts}))
    return counts


def try_write_report(run_dir: Path) -> Path | None:
    """``write_report`` for the end of training/evaluation: a failure is logged, never fatal."""
    try:
        return write_report(run_dir)
    except Exception as exc:  # the report is a by-product: never lose a finished run over it
        log.warning("could not write %s/report.html: %s", run_dir, exc)
        return None


def write_report(run_dir: Path, *, samples: int = 3) -> Path:
    """(Re)write ``RUN/report.html`` from what the run directory holds; return its path."""
    # lazy: torch and the dataset code, only when a report is written
    from rsseg.trained.checkpoint import load_predictor
    from rsseg.data.datasets.tables import metric_classes
    from rsseg.data.sources import get_source
    from rsseg.report.samples import sample_figures

    run_dir = Path(run_dir)
    ckpt = _checkpoint(run_dir)
    if ckpt is None:
        raise RsSegError(f"{run_dir} is not a run directory (no checkpoints/best.ckpt or last.ckpt)")
    predictor = load_predictor(ckpt)
    cfg = predictor.config
    classes = metric_classes(predictor.classes, cfg.data)
    history = read_epoch_history(run_dir / "logs" / "metrics.csv")
    evaluation = _latest_eval(run_dir)
    timings = json.loads((run_dir / "timings.json").read_text()) if (run_dir / "timings.json").exists() else {}

    subtitle = (f"{esc(cfg.model.name)} on {esc(cfg.data.dataset)} ({esc(str(cfg.data.root))}) "
                f"&middot; report written {dt.datetime.now():%Y-%m-%d %H:%M}")
    parts = [f"<h1>{esc(run_dir.name)}</h1>", f"<p class='sub'>{subtitle}</p>"]
    cards = {}
    if history.get("val_miou"):
        cards["best val mIoU"] = max(v for _, v in history["val_miou"])
        cards["epochs"] = len(history["val_miou"])
    if evaluation:
        split, metrics, _ = evaluation
        for key in ("miou", "oa", "mf1"):
            cards[f"{split} {key.replace('miou', 'mIoU').replace('oa', 'OA').replace('mf1', 'mF1')}"] = metrics[key]
    if "train" in timings:
        cards["training minutes"] = timings["train"] / 60
    parts.append("<div class='cards'>" + "".join(
        f"<div class='card'><b>{esc(k)}</b><span>{v:.3f}</span></div>" if isinstance(v, float)
        else f"<div class='card'><b>{esc(k)}</b><span>{v}</span></div>" for k, v in cards.items()) + "</div>")

    curves = curves_png(history)
    parts.append(section("Training curves", img(curves, "training curves") if curves else
                         "<p>No training log found (logs/metrics.csv).</p>"))
    if evaluation:
        split, metrics, folder = evaluation
        body = metrics_table(metrics) + img(iou_bars_png(metrics, classes), "per-class IoU")
        confusion = folder / "confusion_matrix.png"
        if confusion.exists():
            body += img(confusion.read_bytes(), "confusion matrix")
        reliability = folder / "reliability.png"
        if reliability.exists():  # rsseg evaluate: calibration of the max probability
            ece = metrics.get("ece")
            body += (f"<p>Expected calibration error {ece:.4f} (15 bins of the max probability), "
                     f"maximum {metrics['mce']:.4f}.</p>" if ece is not None else "")
            body += img(reliability.read_bytes(), "reliability diagram")
        parts.append(section(f"Metrics on the {split} split (whole scenes, border correction)", body))
    else:
        parts.append(section("Metrics", "<p>Not evaluated yet: run <code>rsseg evaluate "
                                        f"{esc(str(ckpt))}</code> to add test metrics.</p>"))
    source = get_source(cfg.data)
    counts = _class_counts(predictor, source, run_dir)
    if counts is not None:
        parts.append(section("Class priors (training split)", img(priors_png(counts, classes), "class priors")))
    sample_split = evaluation[0] if evaluation else "val"
    try:
        figures = sample_figures(predictor, source, source.scenes(sample_split), classes, count=samples)
        body = legend_html(classes) + "".join(img(f, "sample prediction") for f in figures)
    except RsSegError as exc:
        body = f"<p>No sample predictions: {esc(str(exc))}</p>"
    parts.append(section(f"Sample predictions ({sample_split} split, centre crops)", body))
    if timings:
        rows = "".join(f"<tr><td>{esc(k)}</td><td>{v:.1f} s</td></tr>" for k, v in timings.items())
        parts.append(section("Timings", f"<table>{rows}</table>"))
    config_text = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").exists() else cfg.to_yaml()
    parts.append(section("Configuration", f"<pre>{esc(config_text)}</pre>"))
    out = run_dir / "report.html"
    atomic_write_text(out, page(f"rsseg report: {run_dir.name}", "".join(parts)))
    return out


def write_comparison(run_dirs: list[Path], out: Path) -> Path:
    """One page comparing runs: the results table and per-class IoU box plots."""
    rows = []
    for run_dir in map(Path, run_dirs):
        result = run_dir / "result.json"
        evaluation = _latest_eval(run_dir)
        if result.exists():
            rows.append(json.loads(result.read_text()))
        elif evaluation:
            _, metrics, _ = evaluation
            rows.append({"run": run_dir.name, **{k: metrics[k] for k in ("miou", "mprecision", "mrecall", "mf1", "oa")},
                         "per_class_iou": {k: v["iou"] for k, v in metrics["per_class"].items()}})
        else:
            raise RsSegError(f"{run_dir} has no evaluation (run `rsseg evaluate` on it first)")
    header, body = results_table(rows)
    per_class: dict[str, list[float]] = {}
    for row in rows:
        for name, iou in row.get("per_class_iou", {}).items():
            if iou is not None:
                per_class.setdefault(name, []).append(iou)
    colors = {}
    ckpt = _checkpoint(Path(run_dirs[0]))
    if ckpt is not None:
        # lazy: torch, only when the compared runs have a checkpoint
        from rsseg.trained.checkpoint import read_checkpoint

        table = read_checkpoint(ckpt)["hyper_parameters"]["classes"]
        colors = {n: "#{:02x}{:02x}{:02x}".format(*c) for n, c in zip(table["names"], table["colors"], strict=True)}
    cells = "".join(f"<th>{esc(h)}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in body)
    html = (f"<h1>Comparison of {len(rows)} runs</h1><table class='wide'><tr>{cells}</tr>{trs}</table>"
            + section("Per-class IoU across runs", img(iou_boxplot_png(per_class, colors), "IoU box plots")))
    out = Path(out)
    atomic_write_text(out, page("rsseg comparison", html))
    write_tables(rows, out.parent, title="comparison", stem=out.stem)
    return out


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return esc(str(value))
