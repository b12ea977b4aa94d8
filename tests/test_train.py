import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml

from rsseg.trained.checkpoint import load_predictor, read_checkpoint
from rsseg.config import load_config
from rsseg.errors import RsSegError
from rsseg.evaluate import evaluate
from rsseg.training.train import train


@pytest.mark.bf16
def test_one_epoch_training_writes_run_directory(tiny_run):
    run = tiny_run.run_dir
    assert (run / "config.yaml").exists()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 1 and saved["model"]["base_width"] == 4
    assert tiny_run.best_checkpoint.exists() and tiny_run.last_checkpoint.exists()
    assert (run / "logs" / "metrics.csv").exists()
    assert list((run / "logs").glob("events.out.tfevents.*")), "no TensorBoard log"
    assert tiny_run.best_val_miou is not None and 0.0 <= tiny_run.best_val_miou <= 1.0


def test_checkpoint_carries_everything_needed_to_predict(tiny_run):
    hp = read_checkpoint(tiny_run.best_checkpoint)["hyper_parameters"]
    assert hp["classes"]["names"][0] == "bare land"
    assert len(hp["mean"]) == len(hp["std"]) == 3
    assert hp["config"]["model"]["name"] == "unet"
    predictor = load_predictor(tiny_run.best_checkpoint)
    assert predictor.classes.num_classes == 7
    assert predictor.defaults.window == 256 and predictor.defaults.keep == 224


@pytest.mark.bf16
def test_training_is_deterministic(tiny_config_path, tiny_run, tmp_path):
    cfg = load_config(tiny_config_path, [f"output.dir={tmp_path}", "output.name=again"])
    again = train(cfg, progress=False)
    a = read_checkpoint(tiny_run.last_checkpoint)["state_dict"]
    b = read_checkpoint(again.last_checkpoint)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_continues_from_last_checkpoint(tiny_config_path, tmp_path):
    cfg = load_config(tiny_config_path, [f"output.dir={tmp_path}", "output.name=res"])
    first = train(cfg, progress=False)
    assert first.epochs == 1
    longer = load_config(tiny_config_path, [f"output.dir={tmp_path}", "output.name=res", "train.epochs=2"])
    resumed = train(longer, resume=first.run_dir, progress=False)
    assert resumed.epochs == 2
    assert read_checkpoint(resumed.last_checkpoint)["epoch"] == 2
    # the training curves of the first session survive the resume
    with (first.run_dir / "logs" / "metrics.csv").open() as fh:
        epochs = {int(row["epoch"]) for row in csv.DictReader(fh) if row.get("val_miou")}
    assert epochs == {0, 1}
    assert not (first.run_dir / "logs" / "metrics.before-resume.csv").exists()


def test_existing_run_directory_is_not_overwritten(tiny_config_path, tiny_run):
    cfg = load_config(tiny_config_path)  # same output.dir/name as tiny_run
    with pytest.raises(RsSegError, match="--resume"):
        train(cfg, progress=False)


def test_resume_without_checkpoint(tiny_config_path, tmp_path):
    cfg = load_config(tiny_config_path)
    with pytest.raises(RsSegError, match="cannot resume"):
        train(cfg, resume=tmp_path, progress=False)


def test_evaluate_writes_metrics_json_and_png(tiny_run, tmp_path):
    result = evaluate(tiny_run.best_checkpoint, out=tmp_path / "ev", progress=False)
    data = json.loads(result.metrics_path.read_text())
    for key in ("miou", "oa", "mprecision", "mrecall", "mf1", "per_class", "confusion_matrix", "class_names"):
        assert key in data
    matrix = np.array(data["confusion_matrix"])
    with rasterio.open(next((tiny_run.run_dir.parent.parent / "data" / "test" / "masks").glob("*.tif"))) as src:
        assert matrix.sum() == src.width * src.height  # every test pixel counted exactly once
    assert result.confusion_png.stat().st_size > 1000


@pytest.mark.parametrize(
    "content, message",
    [(None, "checkpoint not found"), (b"not a checkpoint", "not a readable checkpoint")],
)
def test_bad_checkpoint(tmp_path, content, message):
    path = tmp_path / "model.ckpt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RsSegError, match=message):
        load_predictor(path)


def test_foreign_checkpoint(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(RsSegError, match="not an rsseg checkpoint"):
        load_predictor(path)


def test_frequency_weighted_loss_trains_and_reloads(tiny_config_path, tmp_path):
    cfg = load_config(tiny_config_path, [f"output.dir={tmp_path}", "output.name=w", "loss.class_weights=inverse"])
    result = train(cfg, progress=False)
    hp = read_checkpoint(result.last_checkpoint)["hyper_parameters"]
    assert len(hp["class_counts"]) == 7 and sum(hp["class_counts"]) > 0
    assert load_predictor(result.last_checkpoint).classes.num_classes == 7


def test_evaluate_refuses_other_bands_before_any_work(tiny_run, tmp_path) -> None:
    """A checkpoint on data whose band count differs: one clear error naming both files."""
    root = tmp_path / "data"
    cfg = load_config(tiny_run.run_dir / "config.yaml", [f"data.root={root}", "data.dataset=folder"])
    src_root = Path(load_config(tiny_run.run_dir / "config.yaml").data.root)
    (root / "test" / "images").mkdir(parents=True)
    (root / "test" / "masks").mkdir(parents=True)
    (root / "classes.json").write_text((src_root / "classes.json").read_text())
    image = np.zeros((1, 64, 64), dtype=np.uint8)
    with rasterio.open(root / "test" / "images" / "a.tif", "w", driver="GTiff", width=64, height=64,
                       count=1, dtype="uint8") as dst:
        dst.write(image)
    with rasterio.open(root / "test" / "masks" / "a.tif", "w", driver="GTiff", width=64, height=64,
                       count=1, dtype="uint8") as dst:
        dst.write(image)
    with pytest.raises(RsSegError, match=r"a\.tif has 1 band\(s\) but the model expects 3"):
        evaluate(tiny_run.best_checkpoint, config=cfg, split="test", out=tmp_path / "ev", progress=False)


def test_empty_validation_split_trains_without_validation(tiny_config_path, tmp_path):
    """`data.split.val: []`: all labelled scenes train; the evaluated checkpoint is the latest."""
    split = "data.split={train: ['train/*', 'val/*'], val: [], test: ['test/*']}"
    cfg = load_config(tiny_config_path, [f"output.dir={tmp_path}", "output.name=noval", split, "train.epochs=2"])
    result = train(cfg, progress=False)
    assert result.best_val_miou is None and result.epochs == 2
    rows = list(csv.DictReader((result.run_dir / "logs" / "metrics.csv").open()))
    assert not any(r.get("val_miou") for r in rows)
    assert read_checkpoint(result.best_checkpoint)["epoch"] == 1  # the last epoch, not a monitored pick
    assert evaluate(result.best_checkpoint, split="test", progress=False).metrics["miou"] is not None
    assert (result.run_dir / "report.html").exists()
    with pytest.raises(RsSegError, match="early_stopping"):
        load_config(tiny_config_path, [split, "train.early_stopping={patience: 2}"])


def test_val_every_validates_only_every_nth_epoch(tiny_config_path, tmp_path):
    """`train.val_every: 2` over 3 epochs validates after epoch 1 only (0-based), once."""
    cfg = load_config(tiny_config_path, [f"output.dir={tmp_path}", "output.name=every2", "train.epochs=3",
                                         "train.val_every=2"])
    result = train(cfg, progress=False)
    rows = list(csv.DictReader((result.run_dir / "logs" / "metrics.csv").open()))
    validated = sorted({int(r["epoch"]) for r in rows if r.get("val_miou")})
    assert validated == [1]
    assert result.best_val_miou is not None
