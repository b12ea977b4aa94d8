"""Refuse a wall-clock budget that cannot reach the first validation, before training starts.

Why: a ``train.max_minutes`` too short for one epoch (plus its validation) ends with a
"best" checkpoint never scored on validation data, after minutes spent; a few seconds of
timing up front says so at once.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch.utils.data import DataLoader

from rsseg.errors import RsSegError

#: the budget is refused below this share of the estimated time to the first validation
SLACK = 0.5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fetch(loader: DataLoader) -> tuple[Any, float]:
    """One batch read in this process, and the seconds of the faster of two reads: the first
    pays one-off costs (opening files, decoding whole JPEG scenes into the cache)."""
    single = DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=loader.sampler,
                        collate_fn=loader.collate_fn, num_workers=0)
    batches, best = iter(single), math.inf
    batch = None
    for _ in range(2):
        start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            break
        best = min(best, time.perf_counter() - start)
    return batch, best


def _seconds(run, device: torch.device, repeats: int) -> float:
    """Fastest of ``repeats`` calls: the first pays one-off costs (allocator, kernels)."""
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def step_seconds(task: Any, train_dl: DataLoader, val_dl: DataLoader, device: torch.device,
                 bf16: bool, num_workers: int) -> tuple[float, float]:
    """Seconds of one training step (forward, loss, backward, data) and one validation batch.

    The task's weights, buffers, gradients and the random generators are left as they were.
    """
    (images, masks), train_data = _fetch(train_dl)
    (val_images, _), val_data = _fetch(val_dl)
    images, masks, val_images = images.to(device), masks.to(device), val_images.to(device)
    saved = {k: v.detach().clone() for k, v in task.state_dict().items()}
    was_training = task.training
    task.to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def train_step() -> None:
        with autocast:
            loss = task.loss_fn(task(images).float(), masks)
        loss.backward()

    def val_batch() -> None:
        with torch.no_grad(), autocast:
            task(val_images).float().argmax(1)

    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            task.train()
            train = _seconds(train_step, device, 2)
            task.eval()
            val = _seconds(val_batch, device, 2)
    finally:
        task.load_state_dict(saved)
        task.zero_grad(set_to_none=True)
        task.train(was_training)
    # data read in the loop (no workers) adds to a step; workers read alongside it
    if num_workers:
        return max(train, train_data / num_workers), max(val, val_data / num_workers)
    return train + train_data, val + val_data


def train_batches_per_epoch(batches: int, limit: int | float | None) -> int:
    """Training batches of one epoch under ``train.limit_train_batches`` (as Lightning counts them)."""
    if limit is None:
        return batches
    if isinstance(limit, float):
        return int(batches * limit)
    return min(batches, limit)


def check_budget(cfg: Any, config_name: str, task: Any, train_dl: DataLoader, val_dl: DataLoader,
                 device: torch.device, bf16: bool) -> float:
    """Raise an ``RsSegError`` when ``train.max_minutes`` ends before the first validation;
    returns the estimated seconds to it."""
    step, val = step_seconds(task, train_dl, val_dl, device, bf16, cfg.data.num_workers)
    train_batches = train_batches_per_epoch(len(train_dl), cfg.train.limit_train_batches) * cfg.train.val_every
    estimate = train_batches * step + len(val_dl) * val
    budget = 60 * cfg.train.max_minutes
    # a few steps timed in a cold process over-estimate (measured up to 4x on a loaded 2-core CPU):
    # refuse only a clear shortfall, never a run that would have reached its validation
    if budget < SLACK * estimate:
        raise RsSegError(
            f"{config_name}: train.max_minutes={cfg.train.max_minutes:g} ({budget:.1f} s) ends before the first "
            f"validation, estimated at {estimate:.1f} s ({train_batches} training batches x {step:.3f} s + "
            f"{len(val_dl)} validation batches x {val:.3f} s); raise train.max_minutes, or lower "
            "train.limit_train_batches / train.val_every or the data per epoch"
        )
    return estimate
