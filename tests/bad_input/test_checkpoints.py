"""Opening a checkpoint never runs code: every command that reads a ``.ckpt`` (or weights file)
refuses a pickle with a code payload, in the zip form, the legacy form and a plain ``pickle.dump``,
with exit code 2 and one line naming the file; the payload (creating a marker file) never runs
and nothing is written. A corrupt ``last.ckpt`` on resume is the same one line."""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rsseg.cli import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()
FORMS = ["zip", "legacy", "pickle"]
REFUSED = "refusing to load: the checkpoint holds objects other than tensors and plain data"


class Payload:
    """Unpickled in full, this opens (creates) ``marker``: the code a malicious file would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_malicious(path: Path, form: str, marker: Path) -> Path:
    """A checkpoint-shaped dict with the payload inside, in one of the three pickle forms."""
    obj = {"state_dict": {"model.w": torch.zeros(1)}, "hyper_parameters": {"config": Payload(marker)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    if form == "pickle":
        path.write_bytes(pickle.dumps(obj))
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=form == "zip")
    return path


def invoke(args: list[str]):
    """The CLI in-process, wide enough that rich does not wrap the one error line."""
    return runner.invoke(app, args, env={"COLUMNS": "2000"})


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_refused(result, ckpt: Path, marker: Path, message: str = REFUSED) -> None:
    """Exit code 2, the payload did not run, and one error line names the file and the problem."""
    assert result.exit_code == 2, result.output
    assert not marker.exists(), "the checkpoint's payload ran"
    assert "Traceback" not in result.output
    lines = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", result.output).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {ckpt}"), result.output
    assert message in lines[0], result.output


@pytest.fixture(scope="module")
def scene(tiny_config_path: Path) -> Path:
    from rsseg.config import load_config
    from rsseg.data.sources import get_source

    get_source(load_config(tiny_config_path).data).prepare(progress=False)  # the synthetic scenes
    return tiny_config_path.parent / "data" / "test" / "images" / "scene_000.tif"


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("command", ["predict", "evaluate", "export", "explain", "index-build"])
def test_checkpoint_commands_refuse_a_pickled_payload(command, form, tmp_path, scene, tiny_config_path):
    marker, out = tmp_path / "PAYLOAD-RAN", tmp_path / "out"
    ckpt = write_malicious(tmp_path / "model.ckpt", form, marker)
    args = {
        "predict": ["predict", str(ckpt), str(scene), "--out", str(out)],
        "evaluate": ["evaluate", str(ckpt), "--config", str(tiny_config_path), "--out", str(out)],
        "export": ["export", str(ckpt), "--onnx", str(out / "model.onnx")],
        "explain": ["explain", str(ckpt), str(scene), "--out", str(out)],
        "index-build": ["index", "build", str(ckpt), str(scene), "--out", str(out), "--tile", "96"],
    }[command]
    assert_refused(invoke(args), ckpt, marker)
    assert not out.exists() or not any(out.iterdir())


@pytest.fixture(scope="module")
def index(tiny_run, scene, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("index") / "idx"
    result = invoke(["index", "build", str(tiny_run.best_checkpoint), str(scene), "--out", str(out),
                                 "--tile", "96"])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("form", FORMS)
def test_index_search_refuses_a_pickled_payload(form, index, scene, tmp_path):
    marker, out = tmp_path / "PAYLOAD-RAN", tmp_path / "out"
    ckpt = write_malicious(tmp_path / "model.ckpt", form, marker)
    before = snapshot(index)
    result = invoke(["index", "search", str(index), "--query", str(scene), "--checkpoint", str(ckpt),
                                 "--out", str(out)])
    assert_refused(result, ckpt, marker)
    assert snapshot(index) == before and not out.exists()


@pytest.mark.parametrize("suffix", [".ckpt", ".pt"])
@pytest.mark.parametrize("form", FORMS)
def test_probe_refuses_a_pickled_payload(form, suffix, tmp_path, tiny_config_path, scene):
    marker, out = tmp_path / "PAYLOAD-RAN", tmp_path / "out"
    weights = write_malicious(tmp_path / f"encoder{suffix}", form, marker)
    result = invoke(["probe", str(weights), str(tiny_config_path), "--epochs", "1", "--out", str(out)])
    refused = REFUSED.replace("the checkpoint", "the weights file")
    assert_refused(result, weights, marker, refused)
    assert not (out / "probe.json").exists()


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    """A copy of the tiny run directory, to spoil its last.ckpt."""
    return Path(shutil.copytree(tiny_run.run_dir, tmp_path / "run"))


@pytest.mark.parametrize("form", FORMS)
def test_train_resume_refuses_a_pickled_payload(form, run_copy, tiny_config_path, tmp_path):
    marker, last = tmp_path / "PAYLOAD-RAN", run_copy / "checkpoints" / "last.ckpt"
    write_malicious(last, form, marker)
    before = snapshot(run_copy)
    result = invoke(["train", str(tiny_config_path), "--resume", str(run_copy)])
    assert_refused(result, last, marker)
    assert snapshot(run_copy) == before


def test_train_resume_names_a_truncated_last_checkpoint(run_copy, tiny_config_path, tmp_path):
    last = run_copy / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    before = snapshot(run_copy)
    result = invoke(["train", str(tiny_config_path), "--resume", str(run_copy)])
    assert_refused(result, last, tmp_path / "none", "is not a readable checkpoint (corrupt or truncated?)")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("form", FORMS)
def test_pretrain_resume_refuses_a_pickled_payload(form, tiny_config_path, tmp_path):
    marker, run = tmp_path / "PAYLOAD-RAN", tmp_path / "ssl-run"
    last = write_malicious(run / "checkpoints" / "last.ckpt", form, marker)
    (run / "config.yaml").write_text("the run's own config\n")
    config = tmp_path / "ssl.yaml"
    config.write_text(tiny_config_path.read_text() + "pretrain: {epochs: 1, tile_size: 48, view_size: 32}\n")
    before = snapshot(run)
    result = invoke(["pretrain", str(config), "--resume", str(run)])
    assert_refused(result, last, marker)
    assert snapshot(run) == before


@pytest.mark.parametrize("form", FORMS)
def test_refusal_gives_torch_short_reason(form, tmp_path):
    from rsseg.errors import RsSegError
    from rsseg.safe_load import load_weights_only

    ckpt = write_malicious(tmp_path / "model.ckpt", form, tmp_path / "PAYLOAD-RAN")
    with pytest.raises(RsSegError) as info:
        load_weights_only(ckpt)
    reason = str(info.value).partition("(weights-only loading failed: ")[2]
    expected = "Unsupported operand 149" if form == "pickle" else "GLOBAL io.open"  # 149: FRAME
    assert expected in reason and reason.endswith(")") and "\n" not in str(info.value), str(info.value)


def test_corrupt_files_are_named(tmp_path):
    from rsseg.errors import RsSegError
    from rsseg.safe_load import load_weights_only

    junk = tmp_path / "junk.ckpt"
    for content in (b"", b"not a checkpoint", b"PK\x03\x04 truncated zip"):
        junk.write_bytes(content)
        with pytest.raises(RsSegError, match=r"junk.ckpt is not a readable checkpoint \(corrupt or truncated\?\)$"):
            load_weights_only(junk)


def test_real_checkpoints_load_weights_only(tiny_run):
    """What rsseg writes is tensors and plain data: the weights-only reader takes it all."""
    from rsseg.trained.checkpoint import load_predictor, read_checkpoint

    for path in (tiny_run.best_checkpoint, tiny_run.last_checkpoint):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        assert {"state_dict", "hyper_parameters", "optimizer_states", "loops", "callbacks"} <= set(ckpt)
        assert read_checkpoint(path)["hyper_parameters"]["classes"] == ckpt["hyper_parameters"]["classes"]
    predictor = load_predictor(tiny_run.best_checkpoint, device=torch.device("cpu"))
    assert predictor.classes.num_classes > 1


def test_numpy_hyper_parameters_are_saved_plain(tiny_run):
    """``on_save_checkpoint`` makes numpy values plain, so such a checkpoint still loads weights-only."""
    import numpy as np

    from rsseg.training.train import SegmentationTask

    hp = torch.load(tiny_run.best_checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"]
    hp = {**hp, "mean": np.asarray(hp["mean"], dtype=np.float32), "std": [np.float64(s) for s in hp["std"]]}
    checkpoint = {"hyper_parameters": hp}
    from types import SimpleNamespace

    from rsseg.metrics import ConfusionMatrix

    task = SimpleNamespace(val_confusion=ConfusionMatrix(2))  # all on_save_checkpoint reads of self
    SegmentationTask.on_save_checkpoint(task, checkpoint)  # type: ignore[arg-type]
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["hyper_parameters"]
    assert loaded["mean"] == pytest.approx(hp["mean"].tolist()) and type(loaded["std"][0]) is float


def test_resume_loads_weights_only(run_copy, tiny_config_path, monkeypatch):
    """Lightning reads last.ckpt weights-only too (not only rsseg's check before it)."""
    from rsseg.config import load_config
    from rsseg.training.train import train

    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    cfg = load_config(tiny_config_path, ["train.epochs=2"])
    result = train(cfg, resume=run_copy, progress=False)
    assert result.epochs == 2
    assert len(calls) >= 2 and all(c is True for c in calls), calls
