"""Results tables of runs (sweeps, ``rsseg compare``): markdown and CSV, one row per run."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from rsseg.io import atomic_write_text

#: Result columns in table order (per-class IoU columns follow).
COLUMNS = ("run", "model", "miou", "mprecision", "mrecall", "mf1", "oa", "parameters",
           "train_minutes", "epochs", "infer_mpix_s")
#: Columns shown only when some row has them (sweeps: evaluation, steps, failures).
OPTIONAL = {"eval": 1, "steps": 10, "status": 99}


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
    columns = list(COLUMNS)
    for name, at in OPTIONAL.items():
        if any(row.get(name) is not None for row in rows):
            columns.insert(min(at, len(columns)), name)
    header = [*columns, *[f"iou {c}" for c in classes]]
    body = [[row.get(c) for c in columns] + [row.get("per_class_iou", {}).get(c) for c in classes]
            for row in rows]
    return header, body


def _spread(values: list[float]) -> str:
    """``mean ± sample std (min-max)`` of one metric over seeds."""
    arr = np.asarray(values, dtype=float)
    if len(arr) == 1:
        return f"{arr[0]:.3f}"
    return f"{arr.mean():.3f} ± {arr.std(ddof=1):.3f} ({arr.min():.3f}-{arr.max():.3f})"


def summary_table(rows: list[dict]) -> list[str]:
    """Markdown lines: one row per (variant, evaluation), the mean and spread over its seeds.

    Failed seeds are counted in their own column, never averaged in as zeros."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row.get("arm", row["run"]), row.get("eval") or ""), []).append(row)
    classes: list[str] = []
    for row in rows:
        classes += [c for c in row.get("per_class_iou", {}) if c not in classes]
    header = ["variant", "eval", "seeds", "failed", "mIoU", "OA", "steps", "train_minutes",
              *[f"iou {c}" for c in classes]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (arm, ev), group in groups.items():
        ok = [r for r in group if r.get("miou") is not None and "status" not in r]
        cells = [arm, ev or "-", str(len(ok)), str(len(group) - len(ok))]
        if ok:
            mean = lambda key: _fmt(float(np.mean([r[key] for r in ok if r.get(key) is not None]))  # noqa: E731
                                    if any(r.get(key) is not None for r in ok) else None)
            steps = [r["steps"] for r in ok if r.get("steps") is not None]
            cells += [_spread([r["miou"] for r in ok]), mean("oa"), f"{np.mean(steps):.0f}" if steps else "-",
                      mean("train_minutes")]
            cells += [_fmt(float(np.mean([r["per_class_iou"][c] for r in ok if r["per_class_iou"].get(c) is not None])))
                      if any(r["per_class_iou"].get(c) is not None for r in ok) else "-" for c in classes]
        else:
            cells += ["failed"] + ["-"] * (len(header) - 5)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_summary(rows: list[dict], out_dir: Path, title: str = "summary", stem: str = "summary") -> Path:
    path = out_dir / f"{stem}.md"
    atomic_write_text(path, "\n".join([f"# {title}", "", *summary_table(rows)]) + "\n")
    return path


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
