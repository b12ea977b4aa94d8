"""Hardware choices: when bf16 autocast and channels_last actually pay off.

bf16 only speeds CPUs that execute it natively (AVX512-BF16 or AMX). On AVX2-only CPUs
PyTorch emulates it and it is far slower: measured on this project's 2-core AMD EPYC (AVX2)
CI machines, a U-Net training step took 20.3 s in bf16 + channels_last against 1.2 s in
fp32, inference 4.2 s against 0.39 s (``make bench-precision``). So ``auto`` picks bf16
only where it is native.

``RSSEG_PRECISION=32|bf16`` forces what ``auto`` resolves to, so that one run of the test
suite (or a user's jobs) takes the same numeric path on every CPU.

What must not depend on the machine: the outputs of inference (class and probability maps,
areas, metrics, activation maps, retrieval embeddings). They are fp32 unless bf16 is asked for
(``infer.precision``, ``predict --precision``), so another CPU changes only the last bits of
the logits (class maps agree on >= 99.9 % of pixels); bf16 moved 3.5 % of a Dubai map's pixels.
Training follows the hardware (``train.precision: auto``). README, "Precision".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
import os
from pathlib import Path

import torch

from rsseg.errors import RsSegError

#: environment variable that forces what ``precision: auto`` resolves to
PRECISION_ENV = "RSSEG_PRECISION"


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


def forced_precision() -> str | None:
    """``RSSEG_PRECISION`` ("32" | "bf16"), or None when unset or ``auto``."""
    value = os.environ.get(PRECISION_ENV, "").strip()
    if value in ("", "auto"):
        return None
    if value not in ("32", "bf16"):
        raise RsSegError(f"{PRECISION_ENV}={value!r} is not a precision: set 32 or bf16, or unset it for auto")
    return value


def cuda_has_bf16() -> bool:
    """Native bf16 (compute capability 8.0+): emulation on older GPUs is not what bf16 is for."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def use_bf16(precision: str, device_type: str, key: str = "train.precision") -> bool:
    """Resolve ``precision`` ("auto" | "bf16" | "32") for a device type ("cpu", "cuda").

    ``auto`` is ``RSSEG_PRECISION`` where set, else bf16 where the hardware runs it natively.
    bf16 on a GPU without it is refused (``key`` names the setting in the message).
    """
    forced = forced_precision()  # read (and checked) even when ``precision`` is explicit
    if precision == "auto" and forced is not None:
        precision, key = forced, PRECISION_ENV
    if precision == "auto":
        return cuda_has_bf16() if device_type == "cuda" else cpu_has_native_bf16()
    if precision == "bf16" and device_type == "cuda" and torch.cuda.is_available() and not cuda_has_bf16():
        raise RsSegError(f"{key}=bf16: this GPU ({torch.cuda.get_device_name()}) has no bf16 support; use 32")
    return precision == "bf16"


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


@dataclass(frozen=True)
class TrainingHardware:
    """How a training run (segmentation or pretraining) uses the machine, decided once."""

    accelerator: str
    device_type: str  # "cuda" or "cpu"
    bf16: bool
    channels_last: bool


def training_hardware(train_cfg) -> TrainingHardware:
    """Device type, bf16 and channels_last of ``train_cfg`` (the ``train:`` section), first
    thing in a run: a bf16 the device cannot run fails before the run directory is made."""
    device_type = accelerator_device_type(train_cfg.accelerator)
    bf16 = use_bf16(train_cfg.precision, device_type)
    return TrainingHardware(train_cfg.accelerator, device_type, bf16,
                            use_channels_last(train_cfg.channels_last, bf16, device_type))


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
