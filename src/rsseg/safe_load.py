"""``torch.load`` that never runs code: weights-only unpickling, every failure one ``RsSegError`` line.

Why: a checkpoint is a pickle; unpickled in full, opening a downloaded or shared file runs
whatever its ``__reduce__`` says. rsseg's own checkpoints hold only tensors and plain data, so
the weights-only unpickler reads them all. Imports only torch/numpy (no cycles: train.py uses it).
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from enum import Enum
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch

from rsseg.errors import RsSegError


def _short_reason(message: str) -> str:
    """The one informative line of torch's many-line weights-only error."""
    lines = [line.strip() for line in message.splitlines()]
    for marker in ("WeightsUnpickler error:", "unsupported global", "unsupported operand"):
        for line in lines:
            at = line.lower().find(marker.lower())
            reason = (line[at + len(marker):] if marker.endswith(":") else line).strip()
            if at >= 0 and reason:
                return reason.split(". ")[0].rstrip(".")[:200]
    return "content other than tensors and plain data"


def _is_pickle(path: Path) -> bool:
    """Starts like a pickle of protocol 2+ (``pickle.dump``): else an unknown opcode means junk."""
    with path.open("rb") as fh:
        return fh.read(1) == b"\x80"


def load_weights_only(path: Path | str, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; an unsafe, corrupt or missing file is
    an ``RsSegError`` naming ``path`` (``what``: the kind of file, for the message)."""
    path = Path(path)
    if not path.exists():
        raise RsSegError(f"{what} not found: {path}")
    if path.is_dir():
        raise RsSegError(f"{what} path is a directory, expected a file: {path}")
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4": the error below says it all
            warnings.filterwarnings("ignore", ".*pickle protocol.*", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _short_reason(str(exc))
        junk = reason.startswith("Unsupported operand") and not _is_pickle(path)  # not a pickle at all
        if junk or "Weights only load failed" not in str(exc):
            raise RsSegError(f"{path} is not a readable {what} (corrupt or truncated?)") from None
        raise RsSegError(
            f"{path}: refusing to load: the {what} holds objects other than tensors and plain data "
            f"(weights-only loading failed: {reason})"
        ) from None
    except MemoryError:
        raise
    except OSError as exc:
        raise RsSegError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except Exception:  # noqa: BLE001 (RuntimeError, EOFError, KeyError, struct.error...: a bad file)
        raise RsSegError(f"{path} is not a readable {what} (corrupt or truncated?)") from None


def read_lightning_checkpoint(path: Path | str, what: str = "checkpoint") -> dict:
    """A Lightning checkpoint read safely: a dict with ``state_dict`` and ``hyper_parameters``."""
    ckpt = load_weights_only(path, what)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise RsSegError(f"{path} is not an rsseg checkpoint (no state_dict/hyper_parameters)")
    if not isinstance(ckpt["hyper_parameters"], dict):
        raise RsSegError(f"{path} is not an rsseg checkpoint (hyper_parameters is not a mapping)")
    return ckpt


def plain_data(obj: Any) -> Any:
    """``obj`` with numpy values, paths, sets and mapping subclasses made plain: what rsseg puts
    in a checkpoint must load weights-only (called from ``on_save_checkpoint``)."""
    if isinstance(obj, np.generic | np.ndarray):  # before float/str: np.float64 and np.str_ subclass them
        return obj.tolist()
    if isinstance(obj, Enum):  # before str/int: StrEnum and IntEnum subclass them
        return plain_data(obj.value)
    if isinstance(obj, torch.Tensor | str | bytes | int | float | bool) or obj is None:
        return obj
    if isinstance(obj, Mapping):
        return {k: plain_data(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        items = [plain_data(v) for v in obj]
        return tuple(items) if isinstance(obj, tuple) else items
    if isinstance(obj, PurePath):
        return str(obj)
    return obj
