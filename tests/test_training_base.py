"""The Lightning set-up shared by segmentation training and SimCLR pretraining (``rsseg.training.base``)."""

from __future__ import annotations

import warnings
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback, RichProgressBar, Timer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from rsseg.config import load_config
from rsseg.errors import RsSegError
from rsseg.runtime import TrainingHardware
from rsseg.ssl.method import SimCLRTask
from rsseg.training.base import RUN_WARNINGS, RunTask, fitting, run_trainer
from rsseg.training.callbacks import StopOnNonFinite
from rsseg.training.rundir import resume_point
from rsseg.training.train import SegmentationTask

CPU = TrainingHardware(accelerator="cpu", device_type="cpu", bf16=False, channels_last=True)


class Mark(Callback):
    pass


def test_every_trainer_stops_on_nonfinite_after_the_tasks_callbacks_and_logs_into_the_run(tmp_path):
    cfg = load_config(None, ["train.log_every_n_steps=3"])
    mark = Mark()
    trainer = run_trainer(cfg.train, CPU, tmp_path, epochs=2, max_minutes=None, limit_train_batches=4,
                          callbacks=[mark], progress=True, num_sanity_val_steps=0)
    own = [c for c in trainer.callbacks if isinstance(c, (Mark, StopOnNonFinite, RichProgressBar))]
    assert [type(c) for c in own] == [Mark, StopOnNonFinite, RichProgressBar]
    assert trainer.max_epochs == 2 and trainer.limit_train_batches == 4 and trainer.log_every_n_steps == 3
    assert trainer.num_sanity_val_steps == 0  # a task's own Trainer option passes through
    assert [type(lg) for lg in trainer.loggers] == [CSVLogger, TensorBoardLogger]
    assert all(Path(lg.log_dir) == tmp_path / "logs" for lg in trainer.loggers)
    assert trainer.precision == "32-true"

    quiet = run_trainer(cfg.train, CPU, tmp_path, epochs=1, max_minutes=0.5, limit_train_batches=None,
                        callbacks=[], progress=False)
    assert not any(isinstance(c, RichProgressBar) for c in quiet.callbacks)
    assert sum(isinstance(c, StopOnNonFinite) for c in quiet.callbacks) == 1
    budget = [c for c in quiet.callbacks if isinstance(c, Timer)]  # the budget (train.max_minutes)
    assert len(budget) == 1 and budget[0]._duration == 30
    assert not any(isinstance(c, Timer) for c in trainer.callbacks)


def test_fitting_hides_the_run_warnings_and_the_tasks_own_then_restores_the_filters():
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with fitting([".*own noise.*"]):
            warnings.warn("The 'train_dataloader' does not have many workers which may be a bottleneck.")
            warnings.warn("Checkpoint directory /x exists and is not empty.")
            warnings.warn("Experiment logs directory /x exists and is not empty.")
            warnings.warn("some own noise here")
            warnings.warn("a real problem")
        warnings.warn("does not have many workers, outside a fit")
    assert [str(w.message) for w in seen] == ["a real problem", "does not have many workers, outside a fit"]
    assert warnings.filters == before and len(RUN_WARNINGS) == 3


def test_fitting_turns_off_the_deterministic_memory_fill_then_restores_it():
    flags = torch.utils.deterministic
    before = flags.fill_uninitialized_memory
    try:
        flags.fill_uninitialized_memory = True
        with fitting():
            assert flags.fill_uninitialized_memory is False
        assert flags.fill_uninitialized_memory is True
        with pytest.raises(RuntimeError), fitting():
            raise RuntimeError("a failed fit")
        assert flags.fill_uninitialized_memory is True
    finally:
        flags.fill_uninitialized_memory = before


def _tasks(channels_last: bool) -> tuple[SegmentationTask, SimCLRTask]:
    cfg = load_config(None, ["model.base_width=4", "model.depth=2"]).model_dump(mode="json")
    classes = {"names": ["a", "b"], "colors": [[0, 0, 0], [255, 255, 255]]}
    seg = SegmentationTask(cfg, classes, [0.0] * 3, [1.0] * 3, None, channels_last)
    ssl = SimCLRTask(cfg, {"hidden_dim": 8, "projection_dim": 8}, 3, [0.0] * 3, [1.0] * 3, None, channels_last)
    return seg, ssl


@pytest.mark.parametrize("channels_last", [True, False])
def test_both_tasks_put_weights_and_inputs_in_the_chosen_memory_format(channels_last):
    x = torch.rand(2, 3, 32, 32)
    for task in _tasks(channels_last):
        assert isinstance(task, RunTask) and task.use_channels_last is channels_last
        conv = next(m for m in task.model.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) is channels_last
        assert task.memory_format(x).is_contiguous(memory_format=torch.channels_last) is channels_last
        assert torch.equal(task.memory_format(x), x)  # the layout changes, not the values
    seg, ssl = _tasks(channels_last)
    assert seg(x).shape == (2, 2, 32, 32) and ssl.embed(x).shape[0] == 2


def test_checkpoint_hyper_parameters_are_plain_data_for_both_tasks():
    for task in _tasks(False):
        checkpoint = {"hyper_parameters": {"path": PurePosixPath("/a/b"), "x": np.float32(1.5)}}
        task.on_save_checkpoint(checkpoint)
        assert checkpoint["hyper_parameters"] == {"path": "/a/b", "x": 1.5}
        assert type(checkpoint["hyper_parameters"]["x"]) is float


def test_resume_point_names_the_missing_or_bad_checkpoint(tmp_path):
    with pytest.raises(RsSegError, match=r"cannot resume: .*run/checkpoints/last\.ckpt not found"):
        resume_point(tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(RsSegError) as err:
        resume_point(tmp_path / "run")
    assert "\n" not in str(err.value) and "last.ckpt" in str(err.value)
    torch.save({"hyper_parameters": {"in_channels": 3}, "state_dict": {}}, ckpt)
    run_dir, path, checkpoint = resume_point(str(tmp_path / "run"))
    assert (run_dir, path, checkpoint["hyper_parameters"]) == (tmp_path / "run", ckpt, {"in_channels": 3})
