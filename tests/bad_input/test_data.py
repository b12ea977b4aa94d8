"""Bad training data is refused by name before training: truncated PNGs, NaN/inf pixels, missing bands."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from fakedata import folder, multispectral
from fakedata._io import image, write_tif
from typer.testing import CliRunner

from rsseg.cli import app
from rsseg.config import load_config
from rsseg.data.datasets import get_source

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()
RGB_PAIRS = {  # fakedata.folder.make_rgb: area0..3 RGB-coded pairs, black = no label
    "dataset": "folder", "images": "pairs/*_img.png", "masks": "pairs/*_lbl.png", "image_suffix": "_img",
    "mask_suffix": "_lbl", "mask_encoding": "color",
    "split": {"train": ["pairs/area[012]_img"], "val": ["pairs/area3_img"]},
}
MULTISPECTRAL = {  # fakedata.multispectral: 5 scenes, float masks 0 = unlabelled, classes 1..5
    "dataset": "multispectral", "images": "img_train/*.tif", "masks": "training_masks/*.tif",
    "classes": [{"name": f"c{v}", "value": v} for v in range(1, 6)],
    "split": {"train": ["*2021*", "*2022*"], "val": ["*2023*"]},
}


def plain(text: str) -> str:
    """Output without colours or whitespace (rich wraps long paths at the terminal width)."""
    return "".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())


def shown(text: str, out: str) -> bool:
    return plain(text) in out


def write_config(tmp_path: Path, data: dict) -> str:
    cfg = {
        "data": {"cache_dir": str(tmp_path / "cache"), "tile_size": 16, "batch_size": 4, "random_shift": 0, **data},
        "model": {"base_width": 4, "depth": 2},
        "train": {"epochs": 1, "threads": 1},
        "output": {"dir": str(tmp_path / "runs"), "name": "run"},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def truncate(path: Path, share: float = 0.5) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])
    return data


def assert_refused_before_training(result, tmp_path: Path, *named: str) -> str:
    out = plain(result.output)
    assert result.exit_code == 2, out
    assert "Traceback" not in out
    for text in named:
        assert shown(text, out), out
    assert not list((tmp_path / "runs").glob("**/*.ckpt"))  # nothing trained, nothing half-written
    return out


# --------------------------------------------------------------------------- truncated PNGs


@pytest.mark.parametrize("kind", ["img", "lbl"])
def test_truncated_png_is_named_before_training(tmp_path, kind):
    root = folder.make_rgb(tmp_path / "d")
    cut = root / "pairs" / f"area1_{kind}.png"
    whole = truncate(cut)
    config = write_config(tmp_path, {"root": str(root), **RGB_PAIRS})
    result = runner.invoke(app, ["train", config])
    out = assert_refused_before_training(result, tmp_path, f"{cut}: truncated image (decodes ", "of 24 rows)")
    assert not shown("not in the class table", out)
    assert cut.read_bytes() == whole[: len(cut.read_bytes())]  # the data is left as it was
    if kind == "img":  # the verdict is cached with the scene index (keyed on size and mtime): a fixed file trains
        cut.write_bytes(whole)
        result = runner.invoke(app, ["train", config])
        assert result.exit_code == 0, plain(result.output)


def test_data_check_names_the_truncated_png_the_same_way(tmp_path):
    root = folder.make_rgb(tmp_path / "d")
    cut = root / "pairs" / "area2_lbl.png"
    truncate(cut)
    config = write_config(tmp_path, {"root": str(root), **RGB_PAIRS})
    report = tmp_path / "check.json"
    result = runner.invoke(app, ["data", "check", config, "--out", str(report), "--no-progress"])
    assert result.exit_code == 1, plain(result.output)
    problems = json.loads(report.read_text())["problems"]
    found = [p for p in problems if p["severity"] == "error"]
    assert [(p["scene"], p["kind"], p["path"]) for p in found] == [("pairs/area2_img", "truncated", str(cut))]
    assert "truncated image (decodes " in found[0]["detail"]


def test_truncated_cog_is_named_though_its_overviews_are_whole(tmp_path):
    """The index reads a large scene from its overviews, which a COG keeps before the full-resolution
    tiles: a cut-off COG reads fine there, so the TIFF block offsets are checked against the file size."""
    from rasterio.shutil import copy as copy_raster

    root = multispectral.make(tmp_path / "m")
    big = root / "img_train" / "area_20210619.tif"
    data = np.zeros((6, 1024, 1024), dtype=np.uint16) + np.arange(1024, dtype=np.uint16)
    write_tif(tmp_path / "plain.tif", data)
    copy_raster(tmp_path / "plain.tif", big, driver="COG", BLOCKSIZE=256, COMPRESS="DEFLATE")
    write_tif(root / "training_masks" / big.name, np.ones((1024, 1024), dtype=np.uint8))
    truncate(big, 0.9)
    config = write_config(tmp_path, {"root": str(root), **MULTISPECTRAL})
    result = runner.invoke(app, ["train", config])
    assert_refused_before_training(result, tmp_path, f"{big}: truncated image (", "strips/tiles lie past its end)")


# --------------------------------------------------------------------------- NaN in float images


def float_multispectral(root: Path, bad: float = np.nan, nodata: float | None = None) -> Path:
    """fakedata.multispectral with float32 reflectances; a 3 x 5 patch of ``bad`` in band 2 of one scene."""
    multispectral.make(root)
    for k, date in enumerate(multispectral.DATES):
        data = image(k, 30, 34, bands=6, dtype=np.uint16, high=4000).astype(np.float32) / 10000
        if date == "20220619":
            data[1, 4:7, 10:15] = bad
        write_tif(root / "img_train" / f"area_{date}.tif", data, descriptions=multispectral.BANDS, nodata=nodata)
    return root


@pytest.mark.parametrize("bad, named", [(np.nan, "15 nan"), (np.inf, "15 inf")])
def test_nan_in_a_float_training_image_is_named(tmp_path, bad, named):
    root = float_multispectral(tmp_path / "m", bad)
    config = write_config(tmp_path, {"root": str(root), **MULTISPECTRAL})
    result = runner.invoke(app, ["train", config])
    path = root / "img_train" / "area_20220619.tif"
    hint = f'data.nodata_values: ["{named.split()[1]}"] to read them as no data'
    assert_refused_before_training(result, tmp_path, f"{path}: float image holds non-finite pixel values ({named})",
                                   hint)


def test_nan_covered_by_nodata_values_trains_on_finite_values(tmp_path):
    root = float_multispectral(tmp_path / "m")
    config = write_config(tmp_path, {"root": str(root), **MULTISPECTRAL, "nodata_values": ["nan"]})
    src = get_source(load_config(config).data)
    ds = src.tile_dataset(src.scenes("train"))
    assert np.isfinite(ds.mean).all() and np.isfinite(ds.std).all()
    scene = [s.id for s in ds.scenes].index("img_train/area_20220619")
    first = next(i for i, chip in enumerate(ds.chips) if chip.scene == scene and chip.row == 0 and chip.col == 0)
    pixels, mask = ds[first]
    assert np.isfinite(pixels.numpy()).all()
    assert (pixels[1, 4:7, 10:15] == 0).all() and (pixels[0, 4:7, 10:15] != 0).all()  # NaN only in band 2
    assert (mask[4:7, 10:15] == 255).all() and (mask[:4] != 255).any()
    result = runner.invoke(app, ["train", config])
    assert result.exit_code == 0, plain(result.output)
    assert list((tmp_path / "runs").glob("**/last.ckpt"))
    with open(next((tmp_path / "runs").glob("**/metrics.csv"))) as fh:
        losses = [float(v) for row in csv.DictReader(fh) for k, v in row.items() if "loss" in k and v]
    assert losses and np.isfinite(losses).all()


def test_nan_declared_as_the_files_nodata_is_no_data_too(tmp_path):
    root = float_multispectral(tmp_path / "m", nodata=np.nan)
    config = write_config(tmp_path, {"root": str(root), **MULTISPECTRAL})
    src = get_source(load_config(config).data)
    assert len(src.tile_dataset(src.scenes("train")).scenes) == 4
    report = tmp_path / "check.json"
    result = runner.invoke(app, ["data", "check", config, "--out", str(report), "--no-progress"])
    assert result.exit_code == 0, plain(result.output)
    [nan] = [p for p in json.loads(report.read_text())["problems"] if p["kind"] == "nan"]
    assert nan["severity"] == "note" and nan["path"].endswith("area_20220619.tif")


def test_data_check_names_uncovered_nan_as_an_error(tmp_path):
    root = float_multispectral(tmp_path / "m", bad=-np.inf)
    config = write_config(tmp_path, {"root": str(root), **MULTISPECTRAL, "nodata_values": [".nan"]})
    report = tmp_path / "check.json"
    result = runner.invoke(app, ["data", "check", config, "--out", str(report), "--no-progress"])
    assert result.exit_code == 1, plain(result.output)
    [nan] = [p for p in json.loads(report.read_text())["problems"] if p["kind"] == "nan"]
    assert nan["severity"] == "error" and 'data.nodata_values: ["nan", "-inf"]' in nan["detail"]


def test_integer_imagery_is_not_read_again(tmp_path, monkeypatch):
    """The NaN check reads float images whole; uint8/uint16 scenes only get the decimated look."""
    from rsseg.data import index

    def refuse(*args):
        raise AssertionError("integer image read in full")

    monkeypatch.setattr(index, "_count_nonfinite", refuse)
    root = multispectral.make(tmp_path / "m")
    src = get_source(load_config(write_config(tmp_path, {"root": str(root), **MULTISPECTRAL})).data)
    assert len(src.tile_dataset(src.scenes("train")).scenes) == 4


# --------------------------------------------------------------------------- data.bands past every image


def four_band_chips(root: Path) -> Path:
    multispectral.make(root)
    for k, date in enumerate(multispectral.DATES):
        write_tif(root / "img_train" / f"area_{date}.tif", image(k, 30, 34, bands=4, dtype=np.uint16, high=4000))
    return root


def test_data_check_reports_a_band_no_image_has(tmp_path):
    root = four_band_chips(tmp_path / "m")
    config = write_config(tmp_path, {"root": str(root), **MULTISPECTRAL, "bands": [1, 2, 3, 7]})
    report = tmp_path / "check.json"
    result = runner.invoke(app, ["data", "check", config, "--out", str(report), "--no-progress"])
    assert result.exit_code == 1, plain(result.output)
    problems = json.loads(report.read_text())["problems"]
    bands = [p for p in problems if p["kind"] == "band_count"]
    assert {p["scene"] for p in bands} == {f"img_train/area_{d}" for d in multispectral.DATES}
    assert all(p["severity"] == "error" and "4 bands; data.bands asks for band 7 " in p["detail"] for p in bands)


def test_data_stats_refuses_a_band_no_image_has(tmp_path):
    root = four_band_chips(tmp_path / "m")
    config = write_config(tmp_path, {"root": str(root), **MULTISPECTRAL, "bands": [1, 2, 3, 7]})
    out = tmp_path / "stats"
    result = runner.invoke(app, ["data", "stats", config, "--out", str(out), "--no-progress"])
    text = plain(result.output)
    assert result.exit_code == 2, text
    assert shown("4 bands; data.bands asks for band 7", text) and shown(f"{root}/img_train/area_", text)
    assert not out.exists()  # no stats.json without the bands asked for
    result = runner.invoke(app, ["data", "stats", config, "--out", str(out), "--no-progress",
                                 "--set", "data.bands=[1,2,4]"])
    assert result.exit_code == 0, plain(result.output)
    assert [b["band"] for b in json.loads((out / "stats.json").read_text())["bands"]["all"]] == [1, 2, 4]
