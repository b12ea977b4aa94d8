"""The Lightning set-up every rsseg run shares: segmentation training (``rsseg.training.train``)
and SimCLR pretraining (``rsseg.ssl.pretrain``).

Why one place: the hardware choice (``rsseg.runtime.training_hardware``), precision, the
deterministic flag, the loggers of the run directory, the progress bar, the stop on a
non-finite loss, the wall-clock budget, the allocator and the warnings worth hiding were
written twice and had started to drift. What differs between the tasks (their epochs and
budget, checkpoint callbacks, validation, DDP options) is passed in.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from rsseg.allocator import warm_allocator
from rsseg.runtime import TrainingHardware
from rsseg.safe_load import plain_data
from rsseg.training.callbacks import StopOnNonFinite
from rsseg.training.rundir import quiet_lightning

#: Lightning warnings about the set-up every run knowingly has (few CPU workers, a run directory
#: that a resume or an earlier epoch already filled)
RUN_WARNINGS = (
    ".*does not have many workers.*",
    ".*Checkpoint directory.*exists and is not empty.*",
    ".*Experiment logs directory.*exists and is not empty.*",
)


class RunTask(L.LightningModule):
    """What the LightningModules of rsseg runs share: channels_last weights and inputs where
    ``rsseg.runtime`` chose it, and checkpoints whose hyper-parameters load weights-only."""

    def use_memory_format(self, model: torch.nn.Module, channels_last: bool) -> None:
        """Put ``model``'s weights in channels_last when asked (inputs follow in ``memory_format``)."""
        self.use_channels_last = channels_last
        if channels_last:
            model.to(memory_format=torch.channels_last)

    def memory_format(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the weights' memory format: a mismatch makes every convolution convert."""
        if getattr(self, "use_channels_last", False):
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["hyper_parameters"] = plain_data(checkpoint.get("hyper_parameters", {}))  # loads weights-only


def start_run(train_cfg) -> None:
    """Quiet Lightning, ``train.threads`` and the global seed: before any data is read."""
    quiet_lightning()
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    L.seed_everything(train_cfg.seed, workers=True, verbose=False)


def run_trainer(
    train_cfg,
    hw: TrainingHardware,
    run_dir: Path,
    *,
    epochs: int,
    max_minutes: float | None,
    limit_train_batches: int | float | None,
    callbacks: Sequence[Callback],
    progress: bool,
    **options: Any,
) -> L.Trainer:
    """The ``L.Trainer`` of a run in ``run_dir``: ``hw``'s device and precision, ``train_cfg``'s
    devices, determinism and logging interval, CSV + TensorBoard logs in ``run_dir/logs``, the
    stop on a non-finite loss after the task's ``callbacks``, and the rich progress bar.
    ``options``: further ``L.Trainer`` arguments of one task (strategy, validation, ...)."""
    return L.Trainer(
        default_root_dir=run_dir,
        max_epochs=epochs,
        max_time=dt.timedelta(minutes=max_minutes) if max_minutes else None,
        accelerator=hw.accelerator,
        devices=train_cfg.devices,
        precision="bf16-mixed" if hw.bf16 else "32-true",
        # CUDA has no deterministic backward for bilinear up-sampling: warn there, don't fail
        deterministic=("warn" if hw.device_type == "cuda" else True) if train_cfg.deterministic else False,
        limit_train_batches=limit_train_batches,
        log_every_n_steps=train_cfg.log_every_n_steps,
        logger=[
            CSVLogger(run_dir, name="logs", version=""),
            TensorBoardLogger(run_dir, name="logs", version="", default_hp_metric=False),
        ],
        callbacks=[
            *callbacks,
            StopOnNonFinite(),  # always: a NaN step would end "successfully" with NaN checkpoints
            *([RichProgressBar(leave=True)] if progress else []),
        ],
        enable_progress_bar=progress,
        enable_model_summary=False,
        **options,
    )


@contextmanager
def unfilled_memory() -> Iterator[None]:
    """Deterministic algorithms without filling every new tensor with NaN first.

    Why: ``torch.use_deterministic_algorithms(True)`` (``train.deterministic``) also fills the
    memory of each ``torch.empty`` (a debugging aid that makes reads of uninitialised memory
    visible): every activation and gradient buffer is written twice. That cost 6-10 % of a
    training step of the Dubai U-Net (batch 8 x 224 px, bf16, one thread of an AVX-512 BF16
    Xeon); the choice of algorithms, and so the reproducibility, is the same without it.
    """
    flags = torch.utils.deterministic
    before = flags.fill_uninitialized_memory
    flags.fill_uninitialized_memory = False
    try:
        yield
    finally:
        flags.fill_uninitialized_memory = before


@contextmanager
def fitting(ignore: Sequence[str] = ()) -> Iterator[None]:
    """Around ``trainer.fit``: freed activations kept in the process (``rsseg.allocator``: +11-12 %
    training images/s on the 2-core bench machine), deterministic mode without its memory fill
    (``unfilled_memory``) and ``RUN_WARNINGS`` + ``ignore`` hidden."""
    with warnings.catch_warnings(), warm_allocator(), unfilled_memory():
        for pattern in (*RUN_WARNINGS, *ignore):
            warnings.filterwarnings("ignore", pattern)
        yield


def save_last(trainer: L.Trainer, run_dir: Path) -> Path:
    """``run_dir/checkpoints/last.ckpt`` after fit: also covers a stop by the budget mid-epoch."""
    last = run_dir / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(last)
    return last
