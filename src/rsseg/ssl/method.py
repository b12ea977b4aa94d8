"""SimCLR pretraining of a registry model's encoder (NT-Xent on two views per tile).

Why SimCLR, for a CPU budget of minutes to an hour on 2 cores:

* one network and one optimiser: every forward pass is also a learning signal for both views
  (MoCo/BYOL/DINO spend a second, momentum encoder pass per step that learns nothing itself);
* in-batch negatives work at batch 32-128 with a low temperature (0.1-0.2); MoCo's queue only
  helps once it is filled by many steps of a slowly moving encoder, which a short run lacks;
* DINO needs multi-crop, centring/sharpening, a teacher schedule and long training to avoid
  collapse; SimCLR cannot collapse (the negatives forbid it) and learns from the first steps;
* positives from the same ground at another date or by another sensor (seed 002's contrastive
  pretraining) are simply the second view: nothing in the loss changes.

The representation is the global average of the encoder's last stage; the 2-layer projection
head is discarded after pretraining (SimCLR: features before the head transfer better).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rsseg import __version__
from rsseg.config import Config
from rsseg.config.pretrain import PretrainConfig
from rsseg.models import build_model, encoder_of
from rsseg.models.encoders import encoder_features, feature_widths
from rsseg.training.base import RunTask


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR's loss for N positive pairs (rows of z1 and z2) against the 2N - 2 others.

    Returns the mean loss over the 2N anchors and the fraction of anchors whose nearest
    other embedding is their positive (a cheap progress signal).
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    loss = F.cross_entropy(logits, target)
    accuracy = (logits.argmax(dim=1) == target).float().mean()
    return loss, accuracy


class ProjectionHead(nn.Module):
    """Linear -> BN -> ReLU -> Linear, as in SimCLR (v1)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SimCLRTask(RunTask):
    """The registry model (its encoder trained, decoder unused) + projection head.

    Hyper-parameters (configs, bands, normalisation) travel in the checkpoint, so a run can be
    resumed and its encoder exported from the checkpoint alone.
    """

    def __init__(
        self,
        config: dict[str, Any],
        pretrain: dict[str, Any],
        in_channels: int,
        mean: list[float],
        std: list[float],
        band_names: list[str] | None = None,
        channels_last: bool = False,
        rsseg_version: str = __version__,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = Config.model_validate(config)
        self.pcfg = PretrainConfig.model_validate(pretrain)
        self.model = build_model(self.cfg.model, in_channels, 2)  # 2 classes: the decoder is unused
        width = feature_widths(self.model, in_channels)[-1]
        self.head = ProjectionHead(width, self.pcfg.hidden_dim, self.pcfg.projection_dim)
        self.use_memory_format(self.model, channels_last)

    @property
    def encoder(self) -> nn.Module:
        encoder = encoder_of(self.model)
        assert encoder is not None  # checked by encoder_features when the task is built
        return encoder

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) representation: global average of the last encoder stage."""
        return encoder_features(self.model, self.memory_format(x))[-1].float().mean(dim=(2, 3))

    def loss(self, v1: torch.Tensor, v2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.head(self.embed(torch.cat([v1, v2])))
        return nt_xent(z[: len(v1)], z[len(v1) :], self.pcfg.temperature)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        v1, v2 = batch
        loss, accuracy = self.loss(v1, v2)
        self.log("ssl_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(v1))
        self.log("ssl_top1", accuracy, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(v1))
        return loss

    def configure_optimizers(self):
        params = [*self.encoder.parameters(), *self.head.parameters()]
        optimizer = torch.optim.AdamW(params, lr=self.pcfg.lr, weight_decay=self.pcfg.weight_decay)
        warmup, cosine = self.pcfg.warmup_steps, self.pcfg.schedule == "cosine"
        total = max(1, int(self.trainer.estimated_stepping_batches)) if cosine else 1

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            if not cosine:
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
