"""Training on PyTorch Lightning: one run directory per call, resumable, reproducible."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from rsseg import __version__
from rsseg.training.budget import check_budget
from rsseg.training.callbacks import EpochSeeds, find_encoder, training_callbacks
from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.config import Config
from rsseg.data.datasets.tables import metric_classes
from rsseg.data.seeding import EpochSampler, SeededDraws
from rsseg.data.sources import get_source
from rsseg.data.shard import shard_loaders
from rsseg.data.subset import select_training_chips
from rsseg.distributed import (
    check_launch,
    cluster_run_name,
    launch_rank,
    lightning_strategy,
    run_dir_for_children,
    shared_run_dir,
)
from rsseg.errors import RsSegError
from rsseg.gis.areas import ground_resolution
from rsseg.io import atomic_write_text
from rsseg.training.losses import build_loss, class_weight_fade
from rsseg.metrics import ConfusionMatrix, compute_metrics
from rsseg.models import build_model
from rsseg.training.optim import build_optimizer, encoder_lr_groups, run_progress
from rsseg.training.base import RunTask, fitting, run_trainer, save_last, start_run
from rsseg.training.rundir import merge_csv_log, new_run_dir, preserve_csv_log, resume_point
from rsseg.report import record_timing, try_write_report
from rsseg.runtime import training_hardware

log = logging.getLogger(__name__)


class SegmentationTask(RunTask):
    """Model + loss + optimiser; validation mIoU from an exact confusion matrix.

    The hyper-parameters (config, class table, bands, normalisation, the training imagery's
    metres per pixel when georeferenced) travel inside every checkpoint, so a checkpoint alone is enough to predict (``rsseg.trained.checkpoint``).
    """

    def __init__(
        self,
        config: dict[str, Any],
        classes: dict[str, Any],
        mean: list[float],
        std: list[float],
        bands: list[int] | None,
        channels_last: bool = False,
        class_counts: list[int] | None = None,
        rsseg_version: str = __version__,
        resolution_m: float | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = Config.model_validate(config)
        self.classes = ClassTable.from_dict(classes)
        self.model = build_model(self.cfg.model, len(mean), self.classes.num_classes)
        self.loss_fn = build_loss(self.cfg.loss, self.classes.num_classes, class_counts)
        self.weight_fade = class_weight_fade(self.cfg.loss, self.loss_fn, class_counts)
        self.val_confusion = ConfusionMatrix(self.classes.num_classes)
        self.use_memory_format(self.model, channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.memory_format(x))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, masks = batch
        if (masks == IGNORE_INDEX).all():
            # nothing to learn from; CE would return NaN on an all-ignored batch
            return None  # type: ignore[return-value]
        if self.weight_fade is not None:
            power = self.weight_fade.update(run_progress(self.cfg.optim, self.trainer))
            self.log("class_weight_power", power, on_step=True, on_epoch=False)
        loss = self.loss_fn(self(images).float(), masks)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(images))
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def on_validation_epoch_start(self) -> None:
        self.val_confusion.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, masks = batch
        logits = self(images).float()
        if not (masks == IGNORE_INDEX).all():
            self.log("val_loss", self.loss_fn(logits, masks), on_epoch=True, batch_size=len(images))
        self.val_confusion.update(logits.argmax(1), masks)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.world_size > 1:  # exact over the whole val set: counts summed, not mIoUs averaged
            self.val_confusion.sum_across(
                lambda t: self.trainer.strategy.reduce(t.to(self.device), reduce_op="sum"))
        metrics = compute_metrics(self.val_confusion.matrix, metric_classes(self.classes, self.cfg.data))
        for key in ("miou", "oa", "mf1"):
            value = metrics[key]
            self.log(f"val_{key}", float("nan") if value is None else value, prog_bar=key == "miou")

    def configure_optimizers(self):
        params = self.model.parameters()
        if self.cfg.optim.encoder_lr_scale != 1:
            encoder = find_encoder(self.model, self.cfg.model.name, "optim.encoder_lr_scale")
            params = encoder_lr_groups(self.cfg.optim, self.model, encoder)
        return build_optimizer(self.cfg.optim, params, self.trainer)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        RunTask.on_save_checkpoint(self, checkpoint)  # hyper-parameters as plain data (reads nothing of self)
        checkpoint["val_confusion"] = self.val_confusion.matrix.tolist()  # the last validation's counts


def _recorded_seconds(run_dir: Path) -> float:
    import json

    path = run_dir / "timings.json"
    return float(json.loads(path.read_text()).get("train", 0.0)) if path.exists() else 0.0


#: ``train.select`` -> (best checkpoint, last checkpoint) -> the run's model
SELECT = {
    "best": lambda best, last: best,
    "last": lambda best, last: last,
}


@dataclass
class TrainResult:
    run_dir: Path
    #: the best validation mIoU's checkpoint (the last one when nothing is validated)
    best_checkpoint: Path
    last_checkpoint: Path
    best_val_miou: float | None
    seconds: float
    epochs: int
    #: scenes left out under ``data.on_error: skip`` (``rsseg.data.index.Skipped``)
    skipped: list = field(default_factory=list)
    #: the process's rank: only rank 0 wrote the run directory (``rsseg.distributed``)
    global_rank: int = 0
    #: the run's model as ``train.select`` chooses it: what ``rsseg demo``/``experiment`` evaluate
    model_checkpoint: Path | None = None

    def __post_init__(self) -> None:
        if self.model_checkpoint is None:
            self.model_checkpoint = self.best_checkpoint


def _validation_scenes(source: Any, cfg: Config) -> list:
    """The validation scenes; none only when asked for explicitly with ``data.split.val: []``.

    Why: tiny labelled sets (the LoveDA sample, 4+2 Sentinel-2 dates) are better spent on
    training than on checkpoint choice; then the last checkpoint is the one evaluated.
    """
    split = cfg.data.split
    if split is not None and split.val == []:  # early stopping is refused with it (rsseg.config)
        return []
    return source.scenes("val")


def _own_run_dir(cfg: Config, config_name: str, rank: int) -> Path:
    """Rank 0 makes the run directory; a rank started on its own must find it by name."""
    if rank == 0:
        return new_run_dir(cfg, config_name)
    if cfg.output.name is None:
        raise RsSegError("output.name: set it when the processes of a run start separately "
                         "(torchrun, several nodes): every rank must name the same run directory")
    return Path(cfg.output.dir) / cfg.output.name


def train(
    cfg: Config,
    *,
    config_name: str = "run",
    resume: Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``cfg`` into a new run directory, or continue the run in ``resume``."""
    hw = training_hardware(cfg.train)  # first: a bf16 the device cannot run fails before any work
    check_launch(cfg.train, hw.device_type)
    rank = launch_rank(cfg.train.devices)
    if cfg.output.name is None and cluster_run_name(config_name):  # every SLURM rank names it alike
        cfg = cfg.model_copy(deep=True)
        cfg.output.name = cluster_run_name(config_name)
    if resume is not None:
        run_dir, ckpt_path, _ = resume_point(resume)
    else:
        run_dir = (shared_run_dir() if rank > 0 else None) or _own_run_dir(cfg, config_name, rank)
        ckpt_path = None
    if rank == 0:
        atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())

    start_run(cfg.train)

    source = get_source(cfg.data)
    source.prepare(progress=progress)
    classes = source.classes()
    train_scenes, val_scenes = source.scenes("train"), _validation_scenes(source, cfg)
    bands = source.band_indices()  # 1-based numbers, band names resolved
    # mean/std: from the config, else from the (cached) scan of the training scenes
    train_ds = source.tile_dataset(train_scenes, train=True, mean=cfg.data.mean, std=cfg.data.std)
    mean, std = train_ds.mean, train_ds.std
    val_ds = source.tile_dataset(val_scenes, mean=mean, std=std) if val_scenes else None
    loader = dict(batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers,
                  persistent_workers=cfg.data.num_workers > 0)
    # data.subset / data.restrict filter the training chips; data.sampling gives the epoch sampler
    sampler = select_training_chips(train_ds, cfg.data, classes, source.cache_dir())
    # every draw seeded from (seed, epoch, position): a resumed run repeats the epochs exactly
    sampler = EpochSampler(sampler, len(train_ds), cfg.train.seed)
    train_dl = DataLoader(SeededDraws(train_ds), sampler=sampler,
                          drop_last=len(sampler) > cfg.data.batch_size, **loader)
    val_dl = DataLoader(val_ds, shuffle=False, **loader) if val_ds is not None else None

    class_counts = None
    if isinstance(cfg.loss.class_weights, str):  # "inverse" / "median" need the class priors
        counts = train_ds.class_counts  # exact, decoded by the dataset's mask codec
        counts[list(classes.ignore)] = 0
        class_counts = [int(c) for c in counts]
    task = SegmentationTask(
        cfg.model_dump(mode="json"), classes.to_dict(), list(mean), list(std), bands, hw.channels_last,
        class_counts, resolution_m=ground_resolution([s.image for s in train_scenes]),
    )
    checkpoints = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor="val_miou" if val_dl is not None else None,  # no validation: "best" = latest
        mode="max",
        save_last=True,
        auto_insert_metric_name=False,
    )
    history = preserve_csv_log(run_dir) if resume is not None and rank == 0 else None
    trainer = run_trainer(
        cfg.train, hw, run_dir,
        epochs=cfg.train.epochs,
        max_minutes=cfg.train.max_minutes,
        limit_train_batches=cfg.train.limit_train_batches,
        callbacks=[checkpoints, EpochSeeds(cfg.train.seed, [sampler]), *training_callbacks(cfg, task.model)],
        progress=progress,
        num_nodes=cfg.train.num_nodes,
        strategy=lightning_strategy(cfg.train),
        use_distributed_sampler=False,  # rsseg.data.shard: no padded validation, custom samplers shared
        check_val_every_n_epoch=cfg.train.val_every,
        accumulate_grad_batches=cfg.train.accumulate_grad_batches,
    )
    if cfg.train.max_minutes and val_dl is not None and resume is None and trainer.world_size == 1:
        # a budget that ends before the first validation is refused now, not after minutes
        estimate = check_budget(cfg, config_name, task, train_dl, val_dl, trainer.strategy.root_device, hw.bf16)
        log.info("about %.1f s to the first validation (train.max_minutes=%g)", estimate, cfg.train.max_minutes)
    if trainer.world_size > 1:
        train_dl, val_dl = shard_loaders(train_dl, val_dl, trainer.world_size, cfg.train.seed)
    log.info("training %s on %d chips (%d validation), bf16=%s", cfg.model.name, len(train_ds),
             len(val_ds) if val_ds is not None else 0, hw.bf16)
    start = time.perf_counter()
    ignore = (".*but have no `val_dataloader`.*",  # data.split.val: []
              ".*sync_dist=True.*")  # val metrics are summed counts already
    with fitting(ignore), run_dir_for_children(run_dir):
        trainer.fit(task, train_dl, val_dl, ckpt_path=ckpt_path, weights_only=True)
    seconds = time.perf_counter() - start
    skipped = [*source.skipped, *train_ds.skipped, *(val_ds.skipped if val_ds is not None else [])]
    if skipped:
        log.warning("skipped %d bad scene(s) (data.on_error: skip):\n  %s", len(skipped),
                    "\n  ".join(s.problem for s in skipped))
    if history is not None:
        merge_csv_log(run_dir, history)

    last = save_last(trainer, run_dir)
    best = Path(checkpoints.best_model_path) if checkpoints.best_model_path else last
    score = checkpoints.best_model_score
    model = SELECT[cfg.train.select](best, last)
    if not trainer.is_global_zero:  # rank 0 writes timings and the report
        return TrainResult(run_dir, best, last, None if score is None else float(score), seconds,
                           trainer.current_epoch, skipped, trainer.global_rank, model)

    previous = 0.0 if resume is None else _recorded_seconds(run_dir)
    record_timing(run_dir, train=previous + seconds)
    try_write_report(run_dir)
    return TrainResult(
        run_dir=run_dir,
        best_checkpoint=best,
        last_checkpoint=last,
        best_val_miou=None if score is None else float(score),
        seconds=seconds,
        epochs=trainer.current_epoch,
        skipped=skipped,
        model_checkpoint=model,
    )
