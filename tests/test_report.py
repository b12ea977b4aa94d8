"""Run reports and comparisons: self-contained HTML that renders with every image loaded."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tools import chromium

from rsseg.errors import RsSegError
from rsseg.report import write_comparison, write_report


def _chromium() -> str:
    return chromium()


def _rendered_dom(page: Path, tmp_path: Path) -> str:
    """The page's DOM after load, as headless Chromium renders it (no network at all)."""
    cmd = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chrome-profile'}", "--virtual-time-budget=5000",
        "--dump-dom", page.resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def evaluated_run(tiny_run):
    from rsseg.evaluate import evaluate

    evaluate(tiny_run.best_checkpoint, split="test", progress=False)
    return tiny_run


def test_training_writes_a_report_and_evaluation_adds_metrics(evaluated_run) -> None:
    html = (evaluated_run.run_dir / "report.html").read_text()
    for heading in ("Training curves", "Metrics on the test split", "Class priors (training split)",
                    "Sample predictions", "Timings", "Configuration"):
        assert heading in html, heading
    assert "http://" not in html and "https://" not in html  # self-contained: nothing fetched
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', html)
    assert {"training curves", "per-class IoU", "confusion matrix", "class priors", "sample prediction"} <= set(images)


def test_report_renders_in_headless_chromium_with_every_image(evaluated_run, tmp_path: Path) -> None:
    page = write_report(evaluated_run.run_dir)
    dom = _rendered_dom(page, tmp_path)
    match = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert match, "the page's load handler did not run"
    loaded, total = map(int, match.groups())
    assert total >= 5 and loaded == total  # curves, IoU bars, confusion, priors, 1+ samples


def test_comparison_page(evaluated_run, tmp_path: Path) -> None:
    out = write_comparison([evaluated_run.run_dir, evaluated_run.run_dir], tmp_path / "compare.html")
    html = out.read_text()
    assert html.count("<tr>") == 3 and "Per-class IoU across runs" in html
    assert (tmp_path / "compare.csv").exists() and (tmp_path / "compare.md").exists()
    dom = _rendered_dom(out, tmp_path)
    loaded, total = map(int, re.search(r'data-images="(\d+)/(\d+)"', dom).groups())
    assert total == 1 and loaded == 1


def test_report_of_a_folder_that_is_no_run(tmp_path: Path) -> None:
    with pytest.raises(RsSegError, match="not a run directory"):
        write_report(tmp_path)
