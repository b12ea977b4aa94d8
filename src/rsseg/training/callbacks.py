"""Lightning callbacks of the training loop that the config switches on."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, WeightAveraging
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from rsseg.data.seeding import derive_seed, seed_all
from rsseg.errors import RsSegError
from rsseg.training.optim import run_progress

log = logging.getLogger(__name__)


def find_encoder(model: nn.Module, model_name: str, option: str = "train.freeze_encoder") -> nn.Module:
    """The encoder of a registry model, or a clear error naming ``option`` for models without one."""
    from rsseg.models import encoder_of  # lazy: the model registry imports SMP and timm

    encoder = encoder_of(model)
    if encoder is None:
        raise RsSegError(f"model '{model_name}' has no separate encoder: {option} cannot apply")
    return encoder


class FreezeEncoder(Callback):
    """Freeze the encoder for the first ``epochs`` epochs (None: the whole run), seed 002.

    Frozen means no gradients *and* batch-norm statistics kept (the encoder stays in eval
    mode), so a frozen pretrained encoder is exactly the pretrained one.
    """

    def __init__(self, encoder: nn.Module, epochs: int | None) -> None:
        self.encoder = encoder
        self.epochs = epochs

    def _frozen(self, epoch: int) -> bool:
        return self.epochs is None or epoch < self.epochs

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        frozen = self._frozen(trainer.current_epoch)
        for param in self.encoder.parameters():
            param.requires_grad_(not frozen)
        if frozen:
            self.encoder.eval()


class _WeightAverage(WeightAveraging):
    """Lightning's weight averaging as rsseg's runs use it.

    Lightning swaps the average in for each validation (so val mIoU, and best.ckpt's choice,
    score it), writes it as the checkpoints' ``state_dict`` (the raw weights go to
    ``current_model_state``, which only a resume reads) and copies it into the model when
    training ends: evaluate/predict load the average unchanged. Buffers (batch-norm
    statistics) are averaged too. The average lives on the training device, found at setup.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._device is None:  # the module is still on the CPU at setup: copying across devices each step
            self._device = trainer.strategy.root_device
        self._raw: dict[str, torch.Tensor] | None = None
        super().setup(trainer, pl_module, stage)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the final last.ckpt (saved after fit) keeps the raw weights for a resume to go on from
        self._raw = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if getattr(self, "_raw", None) is not None:
            checkpoint["current_model_state"] = self._raw


class EMA(_WeightAverage):
    """Exponential moving average of the weights (``train.ema``), updated after every optimiser step."""

    def __init__(self, decay: float) -> None:
        super().__init__(multi_avg_fn=get_ema_multi_avg_fn(decay))
        self.decay = decay


class SWA(_WeightAverage):
    """Stochastic weight averaging (``train.swa``): the equal average of the weights after each
    optimiser step over the final ``share`` of the run, on the LR schedule's clock
    (``optim.run_progress``: the wall-clock budget, steps or epochs), so the window closes when
    the schedule ends whatever the machine's speed.

    Before the window opens the "average" follows the weights step by step (a copy), so a
    validation or checkpoint then sees the weights themselves, never the initial ones.
    ``averaged`` counts the steps in the window; it travels in checkpoints for a resume.
    """

    def __init__(self, share: float, optim_cfg: Any) -> None:
        super().__init__(avg_fn=self._average)
        self.share = share
        self.optim_cfg = optim_cfg
        self.averaged = 0
        self._trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer
        super().setup(trainer, pl_module, stage)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        if step_idx is None:  # per step only: an epoch-end update would count the last step twice
            return False
        if run_progress(self.optim_cfg, self._trainer) >= 1.0 - self.share:
            self.averaged += 1
        return True

    def _average(self, average: torch.Tensor, current: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        if self.averaged == 0 or not average.is_floating_point():
            return current  # window not open yet (or a step counter buffer): follow the weights
        return average + (current - average) / self.averaged

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.averaged == 0:
            log.warning("train.swa=%g: the run ended before its averaging window opened; the model is the "
                        "final weights", self.share)
        else:
            log.info("SWA: the model is the average of the last %d steps' weights", self.averaged)
        super().on_train_end(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "averaged": self.averaged}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.averaged = int(state_dict.get("averaged", 0))


class StopOnNonFinite(Callback):
    """Stop with an ``RsSegError`` at the first non-finite loss or gradient, before the step.

    Why: one NaN step makes every weight NaN, and the run would still end "successfully"
    with NaN checkpoints and a report. Checked after backward and before the optimiser step
    (one device sync a step: the loss and the summed gradient norms together), so the weights
    are never updated with it and the checkpoints already written are the last good ones.
    bf16 autocast is treated the same: without a loss scaler nothing skips such a step.
    """

    def __init__(self) -> None:
        self._loss: torch.Tensor | None = None
        self._batch = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self._loss, self._batch = None, batch_idx

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        self._loss = loss.detach()

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        loss, self._loss = self._loss, None
        if loss is None:  # nothing was back-propagated (a training_step that returned None)
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        total = loss.float().sum()
        if grads:  # one fused norm kernel per device (torch's clip_grad_norm_ uses it too)
            total = total + torch.stack(torch._foreach_norm(grads)).float().sum().to(total.device)
        if bool(torch.isfinite(total)):
            return
        if not bool(torch.isfinite(loss).all()):
            what = f"the loss is {loss.float().sum().item()}"
        else:
            what = f"the gradient of {_first_nonfinite_grad(pl_module)} is not finite"
        raise RsSegError(stop_message(trainer, what, self._batch))


def _first_nonfinite_grad(module: nn.Module) -> str:
    for name, p in module.named_parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            return name
    return "some parameter"


def stop_message(trainer: L.Trainer, what: str, batch: int) -> str:
    """One line: where training stopped (epoch and step counted from 0, as Lightning and
    logs/metrics.csv count them) and which checkpoint is kept."""
    run_dir = Path(trainer.default_root_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    kept = f"{last} is the last good checkpoint" if last.exists() else "no checkpoint was written"
    return (
        f"{run_dir}: training stopped at epoch {trainer.current_epoch}, step {trainer.global_step} "
        f"(batch {batch} of the epoch): {what}; the weights were not updated with it and {kept}; "
        "check the images for NaN/inf values or lower optim.lr"
    )
class EpochSeeds(Callback):
    """Reseed torch, numpy and ``random`` from ``(seed, epoch)`` as each training epoch starts.

    Why: a run resumed from ``last.ckpt`` would otherwise continue with generators seeded at
    start-up, not where the uninterrupted run had left them (dropout, the DataLoader's
    draws); this way both start every epoch alike (``rsseg.data.seeding``). ``samplers``
    (``EpochSampler``) learn the resumed epoch on loading: Lightning starts the DataLoader,
    whose workers prefetch, before its first ``set_epoch``.
    """

    def __init__(self, seed: int, samplers: Sequence[Any] = ()) -> None:
        self.seed = seed
        self.samplers = list(samplers)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
        epoch = progress.get("processed", checkpoint.get("epoch", 0))  # what Lightning passes to set_epoch
        for sampler in self.samplers:
            sampler.set_epoch(epoch)

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed}  # plain data: checkpoints load with weights_only=True

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("seed", self.seed) != self.seed:
            log.warning("train.seed is %s but the run was started with seed %s: the resumed epochs will not "
                        "repeat an uninterrupted run", self.seed, state_dict["seed"])

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seed_all(derive_seed(self.seed, trainer.current_epoch))


def training_callbacks(cfg, model: nn.Module) -> list[Callback]:
    """Early stopping, weight averaging and encoder freezing as the ``train`` section asks (``cfg``: Config).
    The stop on a non-finite loss is always on: ``rsseg.training.base.run_trainer`` adds it to every run."""
    callbacks: list[Callback] = []
    stop = cfg.train.early_stopping
    if stop is not None:
        callbacks.append(
            EarlyStopping(monitor="val_miou", mode="max", patience=stop.patience,
                          min_delta=stop.min_delta, check_finite=False)
        )
    if cfg.train.ema is not None:
        callbacks.append(EMA(cfg.train.ema))
    if cfg.train.swa is not None:
        callbacks.append(SWA(cfg.train.swa, cfg.optim))
    freeze = cfg.train.freeze_encoder
    if freeze is not False and freeze != 0:
        epochs = None if freeze is True else int(freeze)
        callbacks.append(FreezeEncoder(find_encoder(model, cfg.model.name), epochs))
    return callbacks
