"""Several training processes: a launch that cannot work fails first, and one run directory.

Lightning's ``ddp`` launcher re-runs the command (``rsseg train ...``) for ranks 1..N-1 of
each node, SLURM and torchrun start every rank themselves. Only rank 0 writes the run
directory; the others learn its name from ``RSSEG_RUN_DIR`` (set by rank 0 for the
processes it launches) or compute the same one (``output.name``, else the SLURM job id).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from rsseg.errors import RsSegError

RUN_DIR_ENV = "RSSEG_RUN_DIR"


def check_launch(train_cfg, device_type: str) -> None:
    """One line for ``train.strategy`` unknown to Lightning or more devices than the machine has."""
    from lightning.pytorch.strategies import StrategyRegistry

    known = ["auto", *StrategyRegistry.available_strategies()]
    if train_cfg.strategy not in known:
        shown = [name for name in known if "find_unused" not in name]
        raise RsSegError(f"train.strategy: unknown strategy '{train_cfg.strategy}'; Lightning knows: "
                         f"{', '.join(shown)} (and ddp*_find_unused_parameters_true/false)")
    devices = train_cfg.devices
    if not isinstance(devices, int) or devices < 1:
        return
    if device_type == "cuda":
        have, what = torch.cuda.device_count(), "GPU(s)"
    else:
        have, what = cpu_cores(), "CPU cores"
    if devices > have:
        raise RsSegError(f"train.devices: {devices} processes asked for, but this machine has {have} {what}")


def lightning_strategy(train_cfg) -> str:
    """``train.strategy``, with DDP told to expect unused parameters when the encoder is frozen
    (its weights get no gradient, which plain DDP stops on at the second step)."""
    name, freeze = train_cfg.strategy, train_cfg.freeze_encoder
    several = (isinstance(train_cfg.devices, int) and train_cfg.devices > 1) or train_cfg.num_nodes > 1
    if freeze is False or freeze == 0 or not (name in ("ddp", "ddp_spawn", "ddp_fork") or
                                              (name == "auto" and several)):
        return name
    return f"{'ddp' if name == 'auto' else name}_find_unused_parameters_true"


def cpu_cores() -> int:
    """The cores this process may use (a container's or ``taskset``'s share, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def launch_rank(devices: int | str) -> int:
    """This process's global rank from the launcher's environment, before Lightning starts."""
    for key in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    local, node = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("NODE_RANK", 0))
    return node * (devices if isinstance(devices, int) and devices > 0 else 1) + local


def shared_run_dir() -> Path | None:
    """The run directory rank 0 made, for the processes its launcher started."""
    value = os.environ.get(RUN_DIR_ENV)
    return Path(value) if value else None


def cluster_run_name(config_name: str) -> str | None:
    """A run name every rank of a SLURM job computes alike (the default has a timestamp)."""
    job = os.environ.get("SLURM_JOB_ID")
    return f"{config_name}-slurm{job}" if job and int(os.environ.get("SLURM_NTASKS", 1)) > 1 else None


@contextmanager
def run_dir_for_children(run_dir: Path) -> Iterator[None]:
    """Publish ``run_dir`` to the processes launched inside the block (the env is inherited)."""
    before = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(Path(run_dir).resolve())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = before
