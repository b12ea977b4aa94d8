"""The run configuration: one YAML file parsed into typed pydantic models.

This package's schema (one module per section) is the single place where options are
declared, each with its default and a one-line doc (the ``description``). Unknown keys are rejected with the nearest valid key;
wrong types name the file, the key and the expected type.

Relative paths (``data.root``, ``output.dir``) are resolved against the current working
directory when the config is loaded, and the run directory stores the resolved, absolute
config, so a run can be resumed or evaluated from anywhere.
"""

from __future__ import annotations

import copy
import json
import logging
import shlex
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from rsseg.config.base import Section
from rsseg.config.data import DataConfig, SyntheticConfig
from rsseg.config.errors import describe_error
from rsseg.config.infer import InferConfig, OutputConfig
from rsseg.config.model import (
    DeepLabV3MobileNetConfig,
    DeepLabV3ResNet101Config,
    ModelConfig,
    SegFormerConfig,
    SMPDeepLabV3PlusConfig,
    SMPUNetConfig,
    SMPUNetPlusPlusConfig,
    SwinUNetConfig,
    UNetConfig,
    UNetSmallConfig,
)
from rsseg.config.pretrain import PretrainConfig
from rsseg.config.training import (
    EarlyStoppingConfig,
    LossConfig,
    LossTerm,
    OptimConfig,
    TrainConfig,
)
from rsseg.errors import RsSegError

log = logging.getLogger(__name__)

__all__ = [
    "Config",
    "DataConfig",
    "DeepLabV3MobileNetConfig",
    "DeepLabV3ResNet101Config",
    "EarlyStoppingConfig",
    "InferConfig",
    "LossConfig",
    "LossTerm",
    "ModelConfig",
    "OptimConfig",
    "OutputConfig",
    "PretrainConfig",
    "SMPDeepLabV3PlusConfig",
    "SMPUNetConfig",
    "SMPUNetPlusPlusConfig",
    "Section",
    "SegFormerConfig",
    "SwinUNetConfig",
    "SyntheticConfig",
    "TrainConfig",
    "UNetConfig",
    "UNetSmallConfig",
    "load_config",
    "override_config",
    "validate_config",
]


class Config(Section):
    data: DataConfig = Field(default_factory=DataConfig, description="What to train on.")
    model: ModelConfig = Field(default_factory=UNetConfig, description="Network architecture.")
    loss: LossConfig = Field(default_factory=LossConfig, description="Training loss.")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimiser and schedule.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training loop.")
    infer: InferConfig = Field(default_factory=InferConfig, description="Scene prediction.")
    output: OutputConfig = Field(default_factory=OutputConfig, description="Where runs go.")
    pretrain: PretrainConfig = Field(
        default_factory=PretrainConfig, description="Self-supervised pretraining (`rsseg pretrain`)."
    )

    @field_validator("model", mode="before")
    @classmethod
    def _model_name_default(cls, value: Any) -> Any:
        if isinstance(value, dict) and "name" not in value:  # `name` defaults to unet
            return {"name": "unet", **value}
        return value

    @model_validator(mode="after")
    def _time_schedule_needs_budget(self) -> Config:
        progress = self.optim.scheduler not in ("step", "none")  # poly, cosine, constant, wsd
        if progress and self.optim.interval == "time" and not self.train.max_minutes:
            raise ValueError("optim.interval 'time' decays the LR over train.max_minutes: set it")
        split = self.data.split
        if split is not None and split.val == [] and self.train.early_stopping is not None:
            raise ValueError("train.early_stopping watches validation mIoU, but data.split.val is empty")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def resolve_paths(self, base: Path | None = None) -> Config:
        """Return a copy whose relative paths are absolute (against ``base`` or the CWD)."""
        base = Path.cwd() if base is None else base
        out = self.model_copy(deep=True)
        out.data.root = (base / out.data.root).resolve()
        out.output.dir = (base / out.output.dir).resolve()
        return out


# --------------------------------------------------------------------------- loading


def load_config(path: Path | str | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or start from defaults when ``path`` is None) and apply overrides.

    ``overrides`` are ``key.path=value`` strings (values parsed as YAML, so ``3``, ``0.1``,
    ``[1, 2]``, ``null`` and ``true`` work).
    """
    source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
    return override_config(raw, overrides, source)


def override_config(raw: dict[str, Any], overrides: list[str] | tuple[str, ...] = (),
                    source: str = "<config>") -> Config:
    """``overrides`` applied on a copy of ``raw`` (e.g. a checkpoint's saved config), validated."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        _apply_override(raw, item)
    return validate_config(raw, source)


def validate_config(raw: dict[str, Any], source: str = "<config>") -> Config:
    try:
        return Config.model_validate(raw).resolve_paths()
    except ValidationError as exc:
        lines = [describe_error(err, Config) for err in exc.errors()]
        raise RsSegError(f"invalid config {source}:\n  " + "\n  ".join(lines)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise RsSegError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RsSegError(f"{path} is not valid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RsSegError(f"cannot read config file {path}: {exc}") from None
    if data is None:  # an empty or comments-only file: likely the wrong file, but valid
        log.warning("%s is empty: every setting is the default", path)
        return {}
    if not isinstance(data, dict):
        raise RsSegError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RsSegError(f"override {item!r} must look like key.path=value")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # e.g. *.png (an alias), an unbalanced { or [
        why = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        quoted = shlex.quote(f"{key}={json.dumps(text.strip())}")
        raise RsSegError(f"--set {key}: the value {text!r} is not valid YAML ({why}); "
                         f"quote it as a string: --set {quoted}") from None
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RsSegError(f"override {item!r}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = value
