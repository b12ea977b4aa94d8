"""Results tables of runs (sweeps, ``rsseg compare``): markdown and CSV, one row per run."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from rsseg.io import atomic_write_text

#: Result columns in table order (per-class IoU columns follow).
COLUMNS = ("run", "model", "miou", "mprecision", "mrecall", "mf1", "oa", "parameters",
           "train_minutes", "epochs", "infer_mpix_s")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    if isinstance(value, int) and value >= 10_000:
        return f"{value / 1e6:.2f}M"
    return str(value)


def results_table(rows: list[dict]) -> tuple[list[str], list[list[Any]]]:
    """Header and raw rows: COLUMNS then one IoU column per class (seed 000 Tables 1-2)."""
    classes: list[str] = []
    for row in rows:
        classes += [c for c in row.get("per_class_iou", {}) if c not in classes]
    header = [*COLUMNS, *[f"iou {c}" for c in classes]]
    body = [[row.get(c) for c in COLUMNS] + [row.get("per_class_iou", {}).get(c) for c in classes]
            for row in rows]
    return header, body


def write_tables(
    rows: list[dict], out_dir: Path, title: str = "results", stem: str = "results"
) -> tuple[Path, Path]:
    header, body = results_table(rows)
    md = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in body]
    md_path, csv_path = out_dir / f"{stem}.md", out_dir / f"{stem}.csv"
    atomic_write_text(md_path, "\n".join(md) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in body])
    atomic_write_text(csv_path, buf.getvalue())
    return md_path, csv_path
