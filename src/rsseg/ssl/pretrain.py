"""``pretrain()``: self-supervised pretraining of a config's encoder into a run directory.

Same conventions as ``rsseg.training.train``, from the same Lightning set-up
(``rsseg.training.base``): one run directory (``config.yaml``, ``checkpoints/last.ckpt``,
``logs/``), resumable with ``resume=RUN``, a wall-clock budget, rich progress, bf16 autocast
only where native (``rsseg.runtime``) and channels_last on CPUs. The encoder is exported to
``RUN/encoder.safetensors`` after every epoch and at the end (``rsseg.ssl.export``), so a run
stopped by its budget still leaves a loadable encoder.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import yaml
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from rsseg.config import Config, load_config
from rsseg.config.pretrain import PretrainConfig
from rsseg.data.datasets import get_source
from rsseg.data.tiles import band_stats
from rsseg.errors import RsSegError
from rsseg.io import atomic_write_text, ensure_writable_dir
from rsseg.runtime import training_hardware
from rsseg.ssl.data import (
    Raster,
    UnlabelledTiles,
    check_band_counts,
    expand_images,
    footprint_partners,
    scan_rasters,
)
from rsseg.ssl.export import export_encoder
from rsseg.ssl.method import SimCLRTask
from rsseg.training.base import fitting, run_trainer, save_last, start_run
from rsseg.training.rundir import merge_csv_log, new_run_dir, preserve_csv_log, resume_point

log = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    run_dir: Path
    encoder: Path  # the exported encoder: ``model.pretrained: <this>``
    last_checkpoint: Path
    seconds: float
    epochs: int
    steps: int
    loss: float | None  # mean NT-Xent loss of the last epoch
    tiles: int  # samples per epoch
    images: int
    images_with_partners: int  # images with another date/sensor of the same ground


def pretrain_section(cfg: Config, pretrain: PretrainConfig | None = None) -> PretrainConfig:
    """``pretrain`` if given, else ``cfg.pretrain`` (once the root config has it), else defaults."""
    if pretrain is not None:
        return pretrain
    section = getattr(cfg, "pretrain", None)
    return section if isinstance(section, PretrainConfig) else PretrainConfig()


def collect_rasters(cfg: Config, pcfg: PretrainConfig, progress: bool = True) -> tuple[list[Raster], list[str] | None]:
    """The pretraining images (dataset splits and ``pretrain.images``) and their band names."""
    rasters: list[Raster] = []
    names: list[str] | None = None
    bands = pcfg.bands
    if pcfg.dataset:
        source = get_source(cfg.data)
        source.prepare(progress=progress)
        paths = list(dict.fromkeys(s.image for split in pcfg.splits for s in source.scenes(split)))
        data_bands = source.band_indices()
        all_names = source.band_names()
        names = [all_names[b - 1] for b in data_bands] if data_bands and all_names else all_names
        rasters += scan_rasters(paths, data_bands)
        bands = bands or data_bands
    if pcfg.images:
        rasters += scan_rasters(expand_images(pcfg.images), bands)
    n = check_band_counts(rasters)
    if names is not None and len(names) != n:
        names = None
    return rasters, names


def foreign_pixel_types(rasters: list[Raster]) -> tuple[str, dict[int, tuple[list[float], list[float]]]]:
    """The first raster's pixel type, and own band statistics for rasters of any other type.

    Why: one mean/std cannot serve uint8 aerial JPEGs and uint16 Landsat digital numbers at
    once; standardising the odd ones by their own statistics puts them on the same footing.
    """
    main_type = rasters[0].dtype
    own = {}
    for i, r in enumerate(rasters):
        if r.dtype != main_type:
            mean, std = band_stats([r.path], list(r.bands) if r.bands else None)
            own[i] = (list(mean), [s if s > 1e-6 else 1.0 for s in std])
    if own:
        log.info("%d of %d pretraining images are not %s: each is standardised by its own band statistics",
                 len(own), len(rasters), main_type)
    return main_type, own


def image_stats(rasters: list[Raster], max_images: int = 32) -> tuple[list[float], list[float]]:
    """Per-band mean/std over (decimated reads of) up to ``max_images`` evenly spaced images."""
    pick = np.unique(np.linspace(0, len(rasters) - 1, min(len(rasters), max_images)).round().astype(int))
    means, squares = [], []
    for i in pick:
        r = rasters[int(i)]
        mean, std = band_stats([r.path], list(r.bands) if r.bands else None)
        means.append(np.asarray(mean))
        squares.append(np.asarray(std) ** 2 + np.asarray(mean) ** 2)
    mean = np.mean(means, axis=0)
    std = np.sqrt(np.maximum(np.mean(squares, axis=0) - mean**2, 1e-12))
    return mean.tolist(), np.where(std < 1e-6, 1.0, std).tolist()


class EpochCheckpoint(Callback):
    """After every epoch: ``checkpoints/last.ckpt`` (to resume) and the encoder file (to use)."""

    def __init__(self, run_dir: Path, encoder_path: Path) -> None:
        self.last = run_dir / "checkpoints" / "last.ckpt"
        self.encoder_path = encoder_path

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        ensure_writable_dir(self.last.parent)
        trainer.save_checkpoint(self.last)
        export_task(pl_module, self.encoder_path, steps=trainer.global_step, epochs=trainer.current_epoch + 1)  # type: ignore[arg-type]


def export_task(task: SimCLRTask, path: Path, **info) -> Path:
    hp = task.hparams
    return export_encoder(
        task.model, task.cfg.model, path, in_channels=hp["in_channels"], band_names=hp["band_names"],
        mean=list(hp["mean"]), std=list(hp["std"]), method=task.pcfg.method,
        start=task.cfg.model.pretrained,  # initial weights (a built-in source may change the architecture)
        **info,
    )


def pretrain(
    cfg: Config,
    pretrain_cfg: PretrainConfig | None = None,
    *,
    config_name: str = "pretrain",
    resume: Path | None = None,
    progress: bool = True,
) -> PretrainResult:
    """Pretrain ``cfg.model``'s encoder on unlabelled tiles into a new run (or continue ``resume``)."""
    hw = training_hardware(cfg.train)  # first: a bf16 the device cannot run fails before any work
    pcfg = pretrain_section(cfg, pretrain_cfg)
    ckpt_path: Path | None
    if resume is not None:
        run_dir, ckpt_path, checkpoint = resume_point(resume)  # before config.yaml is replaced
        resumed = checkpoint["hyper_parameters"]
    else:
        run_dir, ckpt_path, resumed = new_run_dir(cfg, config_name), None, None
    dump = cfg.model_dump(mode="json")
    dump["pretrain"] = pcfg.model_dump(mode="json")
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(dump, sort_keys=False))

    start_run(cfg.train)

    rasters, names = collect_rasters(cfg, pcfg, progress)
    n_bands = rasters[0].num_bands
    main_type, own_stats = foreign_pixel_types(rasters)
    if cfg.data.mean is not None and cfg.data.std is not None:
        mean, std = list(cfg.data.mean), list(cfg.data.std)
    else:
        mean, std = image_stats([r for r in rasters if r.dtype == main_type])
    partners = footprint_partners(rasters, pcfg.footprint) if pcfg.multi_date else None
    dataset = UnlabelledTiles(
        rasters, tile_size=pcfg.tile_size, view_size=pcfg.view_size, mean=mean, std=std,
        crop_scale=pcfg.crop_scale, augment=pcfg.augment, partners=partners,
        other_date_p=pcfg.other_date_p, decoded_cache=pcfg.decoded_cache, own_stats=own_stats,
    )
    if len(dataset) < 2:
        raise RsSegError(f"only {len(dataset)} tile(s) of {pcfg.tile_size} px: contrastive pretraining needs at least 2")
    workers = cfg.data.num_workers
    loader = DataLoader(dataset, batch_size=pcfg.batch_size, shuffle=True, drop_last=len(dataset) > pcfg.batch_size,
                        num_workers=workers, persistent_workers=workers > 0)

    if ckpt_path is not None:
        _check_resume(ckpt_path, resumed or {}, n_bands)
    task = SimCLRTask(cfg.model_dump(mode="json"), pcfg.model_dump(mode="json"), n_bands, mean, std, names,
                      hw.channels_last)

    encoder_path = run_dir / f"encoder.{pcfg.export}"
    history = preserve_csv_log(run_dir) if resume is not None else None
    trainer = run_trainer(
        cfg.train, hw, run_dir,
        epochs=pcfg.epochs,
        max_minutes=pcfg.max_minutes,
        limit_train_batches=pcfg.limit_batches,
        callbacks=[EpochCheckpoint(run_dir, encoder_path)],
        progress=progress,
        enable_checkpointing=False,  # EpochCheckpoint writes last.ckpt
        num_sanity_val_steps=0,
    )
    log.info("pretraining %s (%s) on %d tiles of %d images (%d with same-ground partners), bf16=%s",
             cfg.model.name, pcfg.method, len(dataset), len(rasters), dataset.with_partners, hw.bf16)
    start = time.perf_counter()
    with fitting():
        trainer.fit(task, loader, ckpt_path=ckpt_path, weights_only=True)
    seconds = time.perf_counter() - start
    if history is not None:
        merge_csv_log(run_dir, history)
    last = save_last(trainer, run_dir)
    export_task(task, encoder_path, steps=trainer.global_step, epochs=trainer.current_epoch)
    loss = trainer.callback_metrics.get("ssl_loss_epoch", trainer.callback_metrics.get("ssl_loss_step"))
    return PretrainResult(
        run_dir=run_dir, encoder=encoder_path, last_checkpoint=last, seconds=seconds,
        epochs=trainer.current_epoch, steps=trainer.global_step,
        loss=None if loss is None else float(loss), tiles=len(dataset), images=len(rasters),
        images_with_partners=dataset.with_partners,
    )


def _check_resume(ckpt_path: Path, hp: dict, n_bands: int) -> None:
    """Resuming on images with other bands than the run's is an error naming the checkpoint
    (``hp``: its hyper-parameters, read weights-only before Lightning sees the file)."""
    if hp.get("in_channels") not in (None, n_bands):
        raise RsSegError(f"{ckpt_path} was pretrained on {hp['in_channels']} bands; the images now give {n_bands}")


def load_pretrain_config(path: Path | str | None, overrides: list[str] | tuple[str, ...] = ()) -> tuple[Config, PretrainConfig]:
    """A pretraining YAML: the usual sections plus ``pretrain:`` (part of the root config)."""
    cfg = load_config(path, overrides)
    return cfg, pretrain_section(cfg)
