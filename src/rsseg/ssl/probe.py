"""Linear probe: how good are an encoder's frozen features for a labelled segmentation task?

The encoder (pretrained weights loaded exactly as ``model.pretrained`` does) is frozen in
eval mode; only a linear head is trained: per chosen stage a parameter-free BatchNorm
(standardises each feature) and a 1x1 convolution, upsampled bilinearly to the input and
summed. Upsampling and a per-pixel linear map commute, so this *is* one 1x1 convolution over
the concatenated upsampled stages, computed at each stage's own resolution (much cheaper).
mIoU comes from ``rsseg.metrics`` on whole test scenes, assembled from non-shifted chips
(no Border Correction: the same protocol for every encoder, so the numbers compare).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from torch import nn
from torch.utils.data import DataLoader

from rsseg.classes import IGNORE_INDEX
from rsseg.config import Config
from rsseg.data.datasets import get_source
from rsseg.errors import RsSegError
from rsseg.io import atomic_write_text, ensure_writable_dir
from rsseg.metrics import ConfusionMatrix, compute_metrics
from rsseg.models import build_model
from rsseg.models.encoder_file import check_pretrained_file
from rsseg.models.encoders import encoder_features, feature_widths, pad_to_stride
from rsseg.models.pretrained import weights_sources
from rsseg.runtime import use_bf16

log = logging.getLogger(__name__)
RANDOM = ("none", "random", "scratch")


@dataclass
class ProbeResult:
    metrics: dict
    miou: float | None
    weights: str | None  # what the encoder was initialised from (None: random)
    stages: list[int]
    steps: int
    seconds: float
    metrics_path: Path | None


class LinearHead(nn.Module):
    """Sum over stages of upsample(1x1 conv(BN without affine(features)))."""

    def __init__(self, widths: list[int], num_classes: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.BatchNorm2d(w, affine=False) for w in widths)
        self.convs = nn.ModuleList(nn.Conv2d(w, num_classes, 1) for w in widths)

    def forward(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        out = None
        for f, norm, conv in zip(feats, self.norms, self.convs, strict=True):
            y = F.interpolate(conv(norm(f.float())), size=size, mode="bilinear", align_corners=False)
            out = y if out is None else out + y
        assert out is not None
        return out


def resolve_weights(weights: str | Path | None, default: str | None) -> str | None:
    """A pretrain run directory -> its encoder file; 'none' -> random; None -> ``default``."""
    if weights is None:
        return default
    text = str(weights)
    if text.lower() in RANDOM:
        return None
    if text in weights_sources:
        return text
    path = Path(text).expanduser()
    if path.is_dir():
        found = [p for p in (path / "encoder.safetensors", path / "encoder.pt") if p.is_file()]
        if not found:
            raise RsSegError(f"{path} is a folder without encoder.safetensors/encoder.pt (a pretrain run?)")
        path = found[0]
    if not path.is_file():
        raise RsSegError(f"probe weights not found: {path}")
    return str(path.resolve())


def select_stages(stages: str | list[int], count: int) -> list[int]:
    if stages == "all":
        return list(range(count))
    if stages == "last":
        return [count - 1]
    if isinstance(stages, str):
        raise RsSegError(f"probe stages must be 'all', 'last' or a list of indices, got '{stages}'")
    picked = sorted({s % count for s in stages if -count <= s < count})
    if len(picked) != len(set(stages)):
        raise RsSegError(f"probe stages {stages}: the encoder has {count} stages (0..{count - 1})")
    return picked


def probe(
    weights: str | Path | None,
    cfg: Config,
    *,
    stages: str | list[int] = "all",
    epochs: int = 5,
    max_minutes: float | None = None,
    lr: float = 5e-3,
    split: str = "test",
    out: Path | None = None,
    progress: bool = True,
) -> ProbeResult:
    """Train a linear head on ``cfg``'s training chips over the frozen encoder, report mIoU.

    ``weights``: an exported encoder, a pretrain run directory, any ``pretrained:`` file or
    built-in source, 'none' (random encoder), or None (``cfg.model.pretrained``).
    """
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    source = get_source(cfg.data)
    source.prepare(progress=progress)
    classes = source.classes()
    train_ds = source.tile_dataset(source.scenes("train"), train=True, mean=cfg.data.mean, std=cfg.data.std)
    test_ds = source.tile_dataset(source.scenes(split), mean=train_ds.mean, std=train_ds.std)
    in_channels = len(train_ds.mean)

    value = resolve_weights(weights, cfg.model.pretrained)
    if value is not None and value not in weights_sources:
        check_pretrained_file(Path(value), cfg.model, in_channels, strict_bands=True)
    model = build_model(cfg.model.model_copy(update={"pretrained": value}), in_channels, classes.num_classes)
    model.eval().requires_grad_(False)
    widths = feature_widths(model, in_channels)
    device_type = "cuda" if cfg.train.accelerator in ("gpu", "cuda") and torch.cuda.is_available() else "cpu"
    device = torch.device(device_type)
    bf16 = use_bf16(cfg.train.precision, device_type)
    model.to(device)
    chosen = select_stages(stages, len(widths))
    head = LinearHead([widths[i] for i in chosen], classes.num_classes).to(device)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)

    def logits(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_stride(model, x.to(device))
        with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            feats = encoder_features(model, x)
        return head([feats[i] for i in chosen], tuple(x.shape[-2:]))[..., :h, :w]

    loader = DataLoader(train_ds, batch_size=cfg.data.batch_size, shuffle=True, num_workers=cfg.data.num_workers)
    start, steps = time.perf_counter(), 0
    deadline = start + 60 * max_minutes if max_minutes else None
    columns = (TextColumn("probe {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("train", total=epochs * len(loader))
        head.train()
        for _ in range(epochs):
            if deadline is not None and time.perf_counter() > deadline:
                break  # the budget ends the whole loop, not just this epoch
            for images, masks in loader:
                if deadline is not None and time.perf_counter() > deadline:
                    break
                masks = masks.to(device)
                if (masks == IGNORE_INDEX).all():
                    continue
                loss = F.cross_entropy(logits(images), masks, ignore_index=IGNORE_INDEX)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                steps += 1
                bar.update(task, advance=1, description=f"train loss {loss.item():.3f}")
        head.eval()
        confusion = _evaluate(test_ds, source, logits, classes.num_classes, cfg.data.batch_size, bar)
    metrics = compute_metrics(confusion.matrix, classes)
    seconds = time.perf_counter() - start
    path = None
    if out is not None:
        path = ensure_writable_dir(Path(out)) / "probe.json"
        record: dict[str, Any] = {"weights": value, "model": cfg.model.model_dump(mode="json"), "stages": chosen,
                                  "epochs": epochs, "steps": steps, "seconds": seconds, "split": split, **metrics}
        atomic_write_text(path, json.dumps(record, indent=2))
    return ProbeResult(metrics, metrics["miou"], value, chosen, steps, seconds, path)


def _evaluate(test_ds, source, logits, num_classes: int, batch: int, bar: Progress) -> ConfusionMatrix:
    """Whole-scene predictions from the (non-shifted) test chips, then one confusion matrix."""
    preds = [np.full(shape, IGNORE_INDEX, dtype=np.uint8) for shape in test_ds.shapes]
    task = bar.add_task("test", total=len(test_ds))
    with torch.no_grad():
        for first in range(0, len(test_ds), batch):
            index = list(range(first, min(first + batch, len(test_ds))))
            images = torch.stack([test_ds[i][0] for i in index])
            out = logits(images).argmax(1).cpu().numpy().astype(np.uint8)
            for i, pred in zip(index, out, strict=True):
                chip = test_ds.chips[i]
                _, window = test_ds.window(i)
                h, w = test_ds.shapes[chip.scene]
                r, c = int(window.row_off), int(window.col_off)
                rh, cw = min(h - r, pred.shape[0]), min(w - c, pred.shape[1])
                preds[chip.scene][r : r + rh, c : c + cw] = pred[:rh, :cw]
            bar.update(task, advance=len(index))
    confusion = ConfusionMatrix(num_classes)
    for scene, pred in zip(test_ds.scenes, preds, strict=True):
        confusion.update(pred, source.read_mask(scene))
    return confusion
