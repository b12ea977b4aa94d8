"""The built-in demo end to end, with the demo's own training settings (about 4 CPU minutes).

The synthetic classes are separable: a test mIoU under 0.80 means something is broken.
"""

import io

import pytest
import rasterio
from rich.console import Console

from rsseg.demo import run_demo


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    out = io.StringIO()
    summary = run_demo(tmp_path, scene_size=1000, console=Console(file=out, width=120), progress=False)
    text = out.getvalue()
    assert summary.miou is not None and summary.miou >= 0.80, text
    assert "rsseg demo summary" in text and "test mIoU" in text
    assert set(summary.seconds) == {"data", "train", "evaluate", "predict"}
    for key in ("checkpoint", "metrics", "confusion", "map classes", "map color", "map blend"):
        assert summary.paths[key].exists(), key
    scene = tmp_path / "scene" / "synthetic_1000.tif"
    with rasterio.open(scene) as src, rasterio.open(summary.paths["map classes"]) as pred:
        assert pred.crs == src.crs and pred.transform == src.transform
        assert (pred.width, pred.height) == (1000, 1000)  # not a multiple of 224
