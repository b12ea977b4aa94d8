"""Sweeps: grid expansion, one run directory per combination, resumable, results tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rsseg.errors import RsSegError
from rsseg.experiment import load_sweep, run_sweep


def _write_sweep(tmp_path: Path, base: Path, grid: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(f"base: {base}\nname: s\nset: [train.epochs=1]\nsplit: test\ngrid:\n{grid}")
    return path


def test_grid_expands_to_named_runs(tmp_path: Path, tiny_config_path: Path) -> None:
    grid = "  loss.name: [ce, dice]\n  model:\n    thin: {model.base_width: 4}\n    wide: {model.base_width: 8, model.depth: 2}\n"
    sweep = load_sweep(_write_sweep(tmp_path, tiny_config_path, grid))
    assert list(sweep.runs) == [
        "loss.name=ce__thin", "loss.name=ce__wide", "loss.name=dice__thin", "loss.name=dice__wide",
    ]
    assert sweep.runs["loss.name=dice__wide"] == ["loss.name=dice", "model.base_width=8", "model.depth=2"]


@pytest.mark.parametrize(
    "text, message",
    [("grid: {a: []}\n", "non-empty"), ("bogus: 1\n", "unknown keys"), ("name: x\n", "base")],
)
def test_bad_sweep_files(tmp_path: Path, tiny_config_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    base = "" if message == "base" else f"base: {tiny_config_path}\n"
    path.write_text(base + text)
    with pytest.raises(RsSegError, match=message):
        load_sweep(path)


def test_sweep_runs_resumes_and_tabulates(tmp_path: Path, tiny_config_path: Path) -> None:
    path = _write_sweep(tmp_path, tiny_config_path, "  loss.name: [ce, dice]\n")
    out = tmp_path / "out"
    events: list[tuple[str, str]] = []
    rows, folder = run_sweep(path, out=out, progress=False, on_run=lambda n, s: events.append((n, s)))
    assert [r["run"] for r in rows] == ["loss.name=ce", "loss.name=dice"]
    for row in rows:
        assert 0.0 <= row["miou"] <= 1.0 and row["parameters"] > 0 and row["infer_mpix_s"] > 0
        assert (Path(row["run_dir"]) / "checkpoints" / "best.ckpt").exists()
    with (folder / "results.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [t["run"] for t in table] == ["loss.name=ce", "loss.name=dice"]
    assert float(table[0]["miou"]) == pytest.approx(rows[0]["miou"])
    assert any(k.startswith("iou ") for k in table[0])
    assert "| run | model | miou" in (folder / "results.md").read_text()

    # interrupted sweep: one run lost its result (evaluation never finished) -> only it reruns
    (folder / "loss.name=dice" / "result.json").unlink()
    events.clear()
    rows2, _ = run_sweep(path, out=out, progress=False, on_run=lambda n, s: events.append((n, s)))
    assert ("loss.name=ce", "done before, skipped") in events
    assert ("loss.name=dice", "running") in events
    assert json.loads((folder / "loss.name=ce" / "result.json").read_text())["miou"] == rows2[0]["miou"]
    assert rows2[1]["train_minutes"] >= rows[1]["train_minutes"]  # time summed over sessions
