"""Hardware choices: when bf16 autocast and channels_last actually pay off.

bf16 only speeds CPUs that execute it natively (AVX512-BF16 or AMX). On AVX2-only CPUs
PyTorch emulates it and it is far slower: measured on this project's 2-core AMD EPYC (AVX2)
CI machines, a U-Net training step took 20.3 s in bf16 + channels_last against 1.2 s in
fp32, inference 4.2 s against 0.39 s (``make bench-precision``). So ``auto`` picks bf16
only where it is native.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch


@functools.cache
def cpu_has_native_bf16() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def use_bf16(precision: str, device_type: str) -> bool:
    """Resolve ``precision`` ("auto" | "bf16" | "32") for a device type ("cpu", "cuda")."""
    if precision != "auto":
        return precision == "bf16"
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


def use_channels_last(channels_last: str, bf16: bool, device_type: str = "cpu") -> bool:
    """``auto``: on with bf16, and on for fp32 CPUs too (measured: U-Net inference 0.60x the
    time, training 0.95x on the AVX2 CI machines, ``make bench-precision``)."""
    if channels_last == "auto":
        return bf16 or device_type == "cpu"
    return channels_last == "on"


def accelerator_device_type(accelerator: str) -> str:
    """``train.accelerator`` ("auto" | "cpu" | "gpu" | "cuda" ...) -> the device type Lightning
    trains on, "cuda" or "cpu": bf16 and channels_last are chosen for it (train, pretrain)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def inference_batch_size(configured: int | None, device_type: str) -> int:
    """Windows per forward pass: ``configured``, or 1 on a CPU and 8 on a GPU.

    On a CPU the batch does not pay: ``make bench-infer`` (demo U-Net, 7200 x 6800 px, 2
    threads, fp32) ran the seed's per-window loop at batch 1 in 51 s and the same windows at
    batch 8 in 69 s: the activations of one 256 px window stay in cache, those of eight do
    not. A GPU needs batches to fill. The logits do not depend on the batch (tested).
    """
    if configured is not None:
        return int(configured)
    return 1 if device_type == "cpu" else 8
