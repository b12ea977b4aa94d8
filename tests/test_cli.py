"""The CLI shells: help of every command, exit code 2 with one clear message for bad input."""

import json
import re

import pytest
from typer.testing import CliRunner

from rsseg import __version__
from rsseg.cli import app

runner = CliRunner()
COMMANDS = ["train", "evaluate", "predict", "demo", "models", "export", "experiment", "report", "compare",
            "data", "index", "pretrain", "probe", "explain"]


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in plain(result.output)


def test_config_typo_exits_2_without_traceback(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("trian:\n  epochs: 1\n")
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2
    out = plain(result.output)
    assert "did you mean 'train'" in out and "Traceback" not in out


def test_missing_config_exits_2(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "config file not found" in plain(result.output)


def test_corrupt_checkpoint_exits_2(tmp_path):
    ckpt = tmp_path / "bad.ckpt"
    ckpt.write_bytes(b"\x00garbage")
    result = runner.invoke(app, ["predict", str(ckpt), str(ckpt), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "bad.ckpt" in plain(result.output)


def test_debug_shows_traceback(tmp_path):
    result = runner.invoke(app, ["--debug", "train", str(tmp_path / "missing.yaml")])
    assert result.exit_code != 2 and result.exception is not None


def test_predict_non_image_input_exits_2(tiny_run, tmp_path):
    bogus = tmp_path / "notes.tif"
    bogus.write_text("this is not an image")
    result = runner.invoke(app, ["predict", str(tiny_run.best_checkpoint), str(bogus), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "notes.tif" in plain(result.output) and "not a readable image" in plain(result.output)


def test_predict_unwritable_output_exits_2(tiny_run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    image = next((tiny_run.run_dir.parent.parent / "data" / "test" / "images").glob("*.tif"))
    result = runner.invoke(app, ["predict", str(tiny_run.best_checkpoint), str(image), "--out", str(blocker / "sub")])
    assert result.exit_code == 2 and "cannot create output directory" in plain(result.output)


def test_evaluate_and_predict_commands(tiny_run, tmp_path):
    result = runner.invoke(app, ["evaluate", str(tiny_run.best_checkpoint), "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ev" / "metrics.json").exists()
    image = next((tiny_run.run_dir.parent.parent / "data" / "test" / "images").glob("*.tif"))
    result = runner.invoke(app, ["predict", str(tiny_run.best_checkpoint), str(image), "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p" / f"{image.stem}_classes.tif").exists()


def test_predict_invalid_border_correction_exits_2(tiny_run, tmp_path):
    image = next((tiny_run.run_dir.parent.parent / "data" / "test" / "images").glob("*.tif"))
    result = runner.invoke(
        app, ["predict", str(tiny_run.best_checkpoint), str(image), "--window", "200", "--keep", "224",
              "--out", str(tmp_path)],
    )
    assert result.exit_code == 2 and "invalid border correction" in plain(result.output)


def test_cli_report(tiny_run, tmp_path) -> None:
    result = runner.invoke(app, ["report", str(tiny_run.run_dir)])
    assert result.exit_code == 0, result.output
    assert (tiny_run.run_dir / "report.html").exists()
    bad = runner.invoke(app, ["report", str(tmp_path)])
    assert bad.exit_code == 2 and "not a run" in " ".join(bad.output.split())


def test_cli_export_and_predict_with_onnx(tiny_run, tmp_path) -> None:
    model = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", str(tiny_run.best_checkpoint), "--onnx", str(model)])
    assert result.exit_code == 0, result.output
    assert model.exists()
    scene = next((tiny_run.run_dir.parent.parent / "data" / "test" / "images").glob("*.tif"))
    result = runner.invoke(app, ["predict", str(model), str(scene), "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert any((tmp_path / "p").glob("*.tif"))


def test_cli_index_build_search_compare(tiny_run, tmp_path) -> None:
    scenes = sorted((tiny_run.run_dir.parent.parent / "data" / "test" / "images").glob("*.tif"))
    index = tmp_path / "idx"
    result = runner.invoke(app, ["index", "build", str(tiny_run.best_checkpoint), *map(str, scenes),
                                 "--out", str(index), "--tile", "64", "--embed", "backbone", "--min-mass", "0",
                                 "--embed", "encoder=geoembed-aerial-resnet18"])
    assert result.exit_code == 0, result.output
    assert "encoder-geoembed-aerial-resnet18" in plain(result.output)
    tile_id = json.loads((index / "tiles.jsonl").read_text().splitlines()[0])["id"]
    result = runner.invoke(app, ["index", "search", str(index), "--query", tile_id, "--k", "3",
                                 "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert any((tmp_path / "r").glob("*.png"))
    result = runner.invoke(app, ["index", "search", str(index), "--query", tile_id, "--k", "3",
                                 "--by", "encoder", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert '"method": "encoder-geoembed-aerial-resnet18:l2"' in result.output
    result = runner.invoke(app, ["index", "compare", str(index), "--sample", "3"])
    assert result.exit_code == 0, result.output
    assert "backbone" in result.output and "encoder-geoembed-aerial-resnet18:l2" in result.output
    result = runner.invoke(app, ["index", "build", str(tiny_run.best_checkpoint), *map(str, scenes),
                                 "--out", str(tmp_path / "bad"), "--embed", "encoder=nowhere"])
    assert result.exit_code == 2
    assert "encoder=nowhere: unknown encoder source" in plain(result.output).replace("\n", "")


def test_error_messages_print_square_brackets_as_written(tmp_path):
    """Rich markup must not swallow ``[nan]`` or ``[bold]`` quoted in an error line."""
    from typer.testing import CliRunner

    from rsseg.cli import app

    result = CliRunner().invoke(app, ["vectorize", str(tmp_path / "[nan].tif"), "--format", "[bold]"])
    assert result.exit_code == 2
    assert "[nan].tif" in result.output.replace("\n", ""), result.output


def test_train_without_validation_says_its_best_checkpoint_is_the_last_weights(tiny_config_path, tmp_path):
    split = "data.split={train: ['train/*', 'val/*'], val: [], test: ['test/*']}"
    result = runner.invoke(app, ["train", str(tiny_config_path), "--set", f"output.dir={tmp_path}",
                                 "--set", "train.epochs=1", "--set", split])
    assert result.exit_code == 0, result.output
    out = plain(result.output)
    assert "(nothing was validated: the last weights)" in out and "val mIoU None" not in out
