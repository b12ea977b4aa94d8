"""The `infer:` and `output:` sections."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from rsseg.config.base import Section


def border_problem(window: int, keep: int) -> str | None:
    """What is wrong with a Border Correction window/keep pair, or None: the one rule for the
    config (`infer.window`/`infer.keep`) and for `rsseg predict --window/--keep`."""
    if keep <= 0 or window < keep or (window - keep) % 2:
        return "need keep > 0, window >= keep and window - keep even"
    return None


class InferConfig(Section):
    mode: Literal["reference", "fast", "whole", "naive"] = Field(
        "reference",
        description="Default window layout of predict/evaluate (`--mode` overrides): reference = the "
        "seed's Border Correction (window/keep); fast = the same margin around large tiles; whole = "
        "the scene in one forward pass (at most 16 Mpix); naive = no margin, for seam comparisons.",
    )
    window: int = Field(256, ge=16, description="Window the model sees (Border Correction input).")
    keep: int = Field(224, ge=8, description="Centre of each window kept in the output map.")
    batch_size: int | None = Field(
        None, ge=1,
        description="Windows per forward pass; null = auto (`rsseg.runtime.inference_batch_size`): "
        "1 on a CPU, where small forward passes stay in cache, 8 on a GPU.",
    )
    precision: Literal["32", "bf16", "auto"] = Field(
        "32",
        description="Arithmetic of predict/evaluate/explain/index: 32 = maps that do not depend on the "
        "machine; bf16 = faster where native, some pixels change; auto = as `train.precision: auto`.",
    )

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_from_yaml(cls, value: Any) -> Any:
        """YAML reads ``precision: 32`` as a number: take it as the string it means."""
        return "32" if isinstance(value, int) and not isinstance(value, bool) and value == 32 else value

    @model_validator(mode="after")
    def _window_keep(self) -> InferConfig:
        if border_problem(self.window, self.keep):
            raise ValueError("`keep` must be <= `window` and `window - keep` must be even")
        return self


class OutputConfig(Section):
    dir: Path = Field(Path("runs"), description="Parent folder of run directories.")
    name: str | None = Field(
        None, description="Run directory name; null = config file stem + timestamp."
    )


