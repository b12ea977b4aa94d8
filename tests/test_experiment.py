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
    assert json.loads((folder / "loss.name=ce" / "result.json").read_text())["rows"][0]["miou"] == rows2[0]["miou"]
    assert rows2[1]["train_minutes"] >= rows[1]["train_minutes"]  # time summed over sessions


def test_seeds_expand_and_every_config_is_checked_before_training(tmp_path: Path, tiny_config_path: Path) -> None:
    grid = "  variant:\n    default: {}\n    typo: {train.not_a_key: 1}\n"
    path = _write_sweep(tmp_path, tiny_config_path, grid)
    path.write_text(path.read_text() + "seeds: [0, 1]\n")
    sweep = load_sweep(path)
    assert list(sweep.runs) == ["default__seed=0", "default__seed=1", "typo__seed=0", "typo__seed=1"]
    assert sweep.runs["default__seed=1"] == ["train.seed=1"] and sweep.arms["typo__seed=1"] == "typo"
    out = tmp_path / "out"
    with pytest.raises(RsSegError, match=r"(?s)sweep.yaml: run 'typo__seed=0'.*not_a_key"):
        run_sweep(path, out=out, progress=False)
    assert not (out / "default__seed=0").exists()  # refused before the first run trained


@pytest.mark.parametrize(
    "text, message",
    [("evaluate: [{checkpoint: worst}]\n", "checkpoint 'worst'"),
     ("evaluate: [{mode: sideways}]\n", "mode 'sideways'"),
     ("evaluate: [{checkpoint: best, colour: red}]\n", r"evaluate\[0\]"),
     ("seeds: [1, 1]\n", "distinct"),
     ("parallel: 0\n", "parallel")],
)
def test_bad_sweep_evaluations_and_seeds(tmp_path: Path, tiny_config_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"base: {tiny_config_path}\n{text}")
    with pytest.raises(RsSegError, match=message):
        load_sweep(path)


def test_core_slots_are_disjoint() -> None:
    from rsseg.experiment import core_slots

    assert core_slots(2, [0, 1, 2, 3]) == [[0, 1], [2, 3]]
    assert core_slots(2, [5]) == [None, None]  # too few cores: unpinned


def test_summary_mean_and_spread_over_seeds(tmp_path: Path) -> None:
    from rsseg.report.tables import summary_table

    rows = [{"run": f"a__seed={s}", "arm": "a", "eval": "last/whole", "miou": m, "oa": 0.9, "steps": 10,
             "train_minutes": 1.0, "per_class_iou": {"x": m}} for s, m in ((0, 0.5), (1, 0.7))]
    rows.append({"run": "b__seed=0", "arm": "b", "status": "failed: boom"})
    lines = summary_table(rows)
    assert "| a | last/whole | 2 | 0 | 0.600 ± 0.141 (0.500-0.700) |" in lines[2]
    assert lines[3].startswith("| b | - | 0 | 1 | failed |")


def test_parallel_sweep_with_seeds_records_failures(tmp_path: Path, tiny_config_path: Path) -> None:
    """Two runs side by side in pinned child processes; a run that fails is a table row, not lost work."""
    other = tmp_path / "other-dataset.json"  # an EBB list of another dataset: refused at run time
    other.write_text(json.dumps({"tiles": [{"scene": "Tile 9_image_1", "row": 0, "col": 0, "size": 64}]}))
    grid = f"  variant:\n    ok: {{}}\n    broken: {{data.subset: {other}}}\n"
    path = _write_sweep(tmp_path, tiny_config_path, grid)
    path.write_text(path.read_text() + "seeds: [0, 1]\nparallel: 2\n"
                    "evaluate: [{checkpoint: best}, {checkpoint: last, mode: fast}]\n")
    out = tmp_path / "out"
    with pytest.raises(RsSegError, match="2 of 4 runs failed"):
        run_sweep(path, out=out, progress=False)
    results = (out / "results.md").read_text()
    assert results.count("failed: data.subset") == 2 and "other-dataset.json names scenes" in results
    rows = json.loads((out / "ok__seed=1" / "result.json").read_text())["rows"]
    assert [r["eval"] for r in rows] == ["best/reference", "last/fast"] and rows[0]["steps"] > 0
    summary = (out / "summary.md").read_text()
    assert "| ok | best/reference | 2 | 0 |" in summary and "| broken | - | 0 | 2 | failed |" in summary
