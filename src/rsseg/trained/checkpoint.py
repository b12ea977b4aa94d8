"""Load a training checkpoint into a ``Predictor`` without Lightning or the training data."""

from __future__ import annotations

from pathlib import Path

import torch

from rsseg.classes import ClassTable
from rsseg.config import Config, load_config, override_config
from rsseg.errors import RsSegError
from rsseg.models import build_model
from rsseg.trained.predictor import Predictor
from rsseg.runtime import default_device, use_bf16, use_channels_last
from rsseg.safe_load import read_lightning_checkpoint


def read_checkpoint(path: Path) -> dict:
    """A training checkpoint, loaded weights-only (opening it never runs code: ``rsseg.safe_load``)."""
    ckpt = read_lightning_checkpoint(path)
    hp = ckpt["hyper_parameters"]
    missing = [k for k in ("config", "classes", "mean", "std") if k not in hp]
    if missing:
        raise RsSegError(f"{path} is not an rsseg checkpoint (missing {', '.join(missing)})")
    return ckpt


def checkpoint_config(path: Path, overrides: list[str] | tuple[str, ...] = (),
                      config: Path | None = None) -> Config:
    """The config to use a checkpoint with: ``config`` (a YAML file) when given, else the
    checkpoint's own saved config, with ``overrides`` on top; never the defaults, which would
    point another dataset kind (e.g. the synthetic generator) at the user's folder."""
    if config is not None:
        return load_config(config, overrides)
    saved = read_checkpoint(path)["hyper_parameters"]["config"]
    if not isinstance(saved, dict):
        raise RsSegError(f"{path} is not an rsseg checkpoint (its saved config is not a mapping)")
    return override_config(saved, overrides, f"{path} (its saved config)")


def load_predictor(path: Path, *, device: torch.device | None = None, config: Config | None = None) -> Predictor:
    """Checkpoint -> ready-to-run ``Predictor``; ``config`` replaces the run's saved config
    (inference settings, data); ``predictor.config`` is whichever was used.

    Precision is ``infer.precision`` (fp32 unless set), not ``train.precision``: a map must
    not change with the CPU it is made on (README, "Precision")."""
    ckpt = read_checkpoint(path)
    hp = ckpt["hyper_parameters"]
    try:
        saved = Config.model_validate(hp["config"])
        classes = ClassTable.from_dict(hp["classes"])
        # the weights come from the checkpoint: never re-read the `pretrained` file here
        model = build_model(saved.model, len(hp["mean"]), classes.num_classes, load_pretrained=False)
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(state)
    except RsSegError as exc:
        raise RsSegError(f"{path}: {exc}") from None
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise RsSegError(f"{path}: checkpoint does not match its model config: {exc}") from None
    cfg = config or saved
    device = device or default_device()
    bf16 = use_bf16(cfg.infer.precision, device.type, key="infer.precision")
    bands = hp.get("bands")
    return Predictor(
        model=model,
        classes=classes,
        mean=list(hp["mean"]),
        std=list(hp["std"]),
        bands=[b - 1 for b in bands] if bands else None,
        defaults=cfg.infer,
        precision="bf16" if bf16 else "32",
        channels_last=use_channels_last(cfg.train.channels_last, bf16, device.type),
        device=device,
        config=cfg,
        temperature=_temperature(path, hp),
    )


def _temperature(path: Path, hp: dict) -> float:
    """``hyper_parameters["temperature"]`` (``rsseg calibrate``), 1.0 when absent."""
    t = hp.get("temperature", 1.0)
    if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t < float("inf"):
        raise RsSegError(f"{path}: hyper_parameters.temperature must be a positive number, got {t!r}")
    return float(t)
