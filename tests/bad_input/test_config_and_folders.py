"""Never write into user data; config edge cases (issue 16).

`--set` on a checkpoint applies to its own saved config, the synthetic generator refuses a
folder it did not make, and empty configs, `--window 0` and unquoted globs get one clear line.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rsseg.cli import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def flat(text: str) -> str:
    """Output without colour codes or whitespace: rich wraps long lines (and paths) anywhere."""
    return re.sub(r"\s+", "", plain(text))


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (new files show up too)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    """A user's folder in the split layout: an image named like a synthetic scene, a classes.json."""
    root = tmp_path / "user data"
    (root / "test" / "images").mkdir(parents=True)
    (root / "test" / "images" / "scene_000.tif").write_bytes(b"II*\x00 the user's own scene " * 50)
    (root / "test" / "images" / "field.png").write_bytes(b"\x89PNG user image")
    (root / "classes.json").write_text('{"classes": [{"name": "wheat"}, {"name": "barley"}]}\n')
    return root


def data_of(tiny_run) -> Path:
    return tiny_run.run_dir.parent.parent / "data"


def test_evaluate_set_root_never_writes_into_user_folder(tiny_run, user_dir: Path) -> None:
    """The tiny checkpoint is synthetic: its generator must refuse the user's folder, and the
    run's own eval-test/metrics.json must not be replaced."""
    before = snapshot(user_dir)
    run_eval = snapshot(tiny_run.run_dir)
    result = runner.invoke(app, ["evaluate", str(tiny_run.best_checkpoint), "--set", f"data.root={user_dir}"])
    assert result.exit_code == 2, result.output
    assert flat(str(user_dir)) in flat(result.output) and "isnotempty" in flat(result.output)
    assert "Traceback" not in result.output
    assert snapshot(user_dir) == before
    assert snapshot(tiny_run.run_dir) == run_eval


def test_evaluate_set_applies_on_the_checkpoints_config(tiny_run, tmp_path: Path) -> None:
    """Only data.root changes: the synthetic settings are the checkpoint's, not the defaults."""
    from rsseg.trained.checkpoint import checkpoint_config, read_checkpoint
    from rsseg.config import load_config

    saved = read_checkpoint(tiny_run.best_checkpoint)["hyper_parameters"]["config"]
    cfg = checkpoint_config(tiny_run.best_checkpoint, [f"data.root={tmp_path / 'new'}"])
    assert cfg.data.root == (tmp_path / "new").resolve()
    assert cfg.data.dataset == saved["data"]["dataset"] and cfg.model.model_dump(mode="json") == saved["model"]
    assert cfg.data.synthetic != load_config(None).data.synthetic  # else this test could not fail

    result = runner.invoke(app, ["evaluate", str(tiny_run.best_checkpoint), "--set", f"data.root={tmp_path / 'new'}",
                                 "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    params = json.loads((tmp_path / "new" / "manifest.json").read_text())["params"]
    assert params["size"] == [192, 192] and params["seed"] == 3  # the tiny config's, not 512 / 0
    assert params["splits"] == {"train": 2, "val": 1, "test": 1}
    assert (tmp_path / "ev" / "metrics.json").is_file()


def test_evaluate_folder_checkpoint_reads_user_folder_untouched(tiny_run, tmp_path: Path) -> None:
    """A checkpoint trained on `dataset: folder` stays a folder dataset with --set data.root."""
    import torch

    ckpt = torch.load(tiny_run.best_checkpoint, map_location="cpu", weights_only=False)
    ckpt["hyper_parameters"]["config"]["data"]["dataset"] = "folder"
    folder_ckpt = tmp_path / "folder.ckpt"
    torch.save(ckpt, folder_ckpt)
    user = tmp_path / "user"
    shutil.copytree(data_of(tiny_run) / "test", user / "test")
    shutil.copy(data_of(tiny_run) / "classes.json", user / "classes.json")
    before = snapshot(user)
    result = runner.invoke(app, ["evaluate", str(folder_ckpt), "--set", f"data.root={user}",
                                 "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert snapshot(user) == before and not (user / "manifest.json").exists()
    assert (tmp_path / "ev" / "metrics.json").is_file()


def test_train_refuses_a_nonempty_root_before_writing(tiny_config_path: Path, user_dir: Path, tmp_path: Path) -> None:
    before = snapshot(user_dir)
    result = runner.invoke(app, ["train", str(tiny_config_path), "--set", f"data.root={user_dir}",
                                 "--set", f"output.dir={tmp_path / 'runs'}"])
    assert result.exit_code == 2, result.output
    assert flat(str(user_dir)) in flat(result.output) and "notmadebythesyntheticgenerator" in flat(result.output)
    assert snapshot(user_dir) == before


def test_generator_keeps_reusing_its_own_folder(tmp_path: Path) -> None:
    """A folder it made (manifest present), also one left by an interrupted run, still works."""
    from rsseg.data.synthetic import generate_dataset

    root = generate_dataset(tmp_path / "ds", splits={"train": 1}, size=64, seed=1, progress=False)
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({"generator": "rsseg.data.synthetic",
                                                    "files": manifest["files"]}))  # interrupted
    generate_dataset(root, splits={"train": 1}, size=64, seed=1, progress=False)
    assert json.loads((root / "manifest.json").read_text())["params"] == manifest["params"]


def test_empty_config_warns(tmp_path: Path, user_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A warning (the file is valid), then the defaults' generator refuses the user's folder."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here yet\n\n")
    before = snapshot(user_dir)
    with caplog.at_level("WARNING", logger="rsseg.config"):
        result = runner.invoke(app, ["train", str(empty), "--set", f"data.root={user_dir}",
                                     "--set", f"output.dir={tmp_path / 'runs'}"])
    assert f"{empty} is empty: every setting is the default" in caplog.text
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and snapshot(user_dir) == before


@pytest.mark.parametrize("args", [["--window", "0"], ["--window", "-256"], ["--keep", "0"],
                                  ["--window", "64", "--keep", "96"]])
def test_predict_bad_window_names_the_option(tiny_run, tmp_path: Path, args: list[str]) -> None:
    image = next((data_of(tiny_run) / "test" / "images").glob("*.tif"))
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(tiny_run.best_checkpoint), str(image), *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    said = flat(result.output)  # the option as given, and the rule it breaks (a bound, or the pair's rule)
    assert flat(" ".join(args)) in said and ("invalidbordercorrection" in said or "greaterthanorequalto" in said)
    assert not out.exists()


@pytest.mark.parametrize("value", ["*.png", "{", "[a, b"])
def test_set_value_not_yaml_suggests_quotes(tiny_config_path: Path, value: str) -> None:
    result = runner.invoke(app, ["train", str(tiny_config_path), "--set", f"data.image_glob={value}"])
    assert result.exit_code == 2, result.output
    text = flat(result.output)
    assert flat(f"--set data.image_glob: the value {value!r} is not valid YAML") in text
    assert flat(f"""--set 'data.image_glob="{value}"'""") in text
    assert plain(result.output).count("error:") == 1 and "Traceback" not in result.output
