"""An image with the wrong bands: predict, explain and index build refuse it with one rule and
one line naming the image (``Predictor.check_bands``), exit code 2, and write nothing for it."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from typer.testing import CliRunner

from rsseg.classes import ClassTable
from rsseg.cli import app
from rsseg.config import load_config
from rsseg.errors import RsSegError
from rsseg.models import build_model
from rsseg.trained.predictor import Predictor

runner = CliRunner()
CLASSES = ClassTable(names=("a", "b"), colors=((255, 0, 0), (0, 255, 0)))


def _checkpoint(tiny_config_path: Path, path: Path, bands: list[int] | None) -> Path:
    """A checkpoint as training writes it (untrained weights: only its bands matter here)."""
    cfg = load_config(tiny_config_path)
    model = build_model(cfg.model, len(bands) if bands else 3, CLASSES.num_classes)
    hp = {"config": cfg.model_dump(mode="json"), "classes": CLASSES.to_dict(), "bands": bands,
          "mean": [0.0] * (len(bands) if bands else 3), "std": [1.0] * (len(bands) if bands else 3)}
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": hp}, path)
    return path


def _image(path: Path, count: int) -> Path:
    data = np.random.default_rng(0).integers(0, 255, (count, 64, 64), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=count, dtype="uint8") as ds:
        ds.write(data)
    return path


@pytest.mark.parametrize(
    ("command", "bands", "count", "problem"),
    [
        ("predict", None, 4, "has 4 band(s) but the model expects 3"),
        ("explain", None, 2, "has 2 band(s) but the model expects 3"),
        ("index", [1, 2, 5], 4, "has 4 band(s) but the model reads bands [1, 2, 5] (1-based)"),
        ("predict", [1, 2, 5], 4, "has 4 band(s) but the model reads bands [1, 2, 5] (1-based)"),
    ],
)
def test_wrong_bands_one_rule_one_line(tiny_config_path, tmp_path, command, bands, count, problem):
    ckpt = _checkpoint(tiny_config_path, tmp_path / "model.ckpt", bands)
    image = _image(tmp_path / "scene.tif", count)
    out = tmp_path / "out"
    args = {"predict": ["predict", str(ckpt), str(image), "--out", str(out)],
            "explain": ["explain", str(ckpt), str(image), "--out", str(out)],
            "index": ["index", "build", str(ckpt), str(image), "--out", str(out), "--tile", "32"]}[command]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())  # rich wraps long lines
    assert f"{image} {problem}" in message
    assert "Traceback" not in result.output
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert not [p for p in written if p.suffix in (".tif", ".png", ".npy", ".json") and "scene" in p.name]
    assert not (out / "manifest.json").exists()


def test_negative_band_indices_are_refused():
    """The engine's old rule let -1 through (numpy would read the last band)."""
    predictor = Predictor(model=torch.nn.Identity(), classes=CLASSES, mean=[0.0], std=[1.0], bands=[-1])
    with pytest.raises(RsSegError, match=r"x.tif has 3 band\(s\) but the model reads bands \[0\]"):
        predictor.check_bands(3, "x.tif")
    Predictor(model=torch.nn.Identity(), classes=CLASSES, mean=[0.0], std=[1.0], bands=[2]).check_bands(3)
