"""The `infer:` and `output:` sections."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from rsseg.config.base import Section


def border_problem(window: int, keep: int) -> str | None:
    """What is wrong with a Border Correction window/keep pair, or None: the one rule for the
    config (`infer.window`/`infer.keep`) and for `rsseg predict --window/--keep`."""
    if keep <= 0 or window < keep or (window - keep) % 2:
        return "need keep > 0, window >= keep and window - keep even"
    return None


class InferConfig(Section):
    window: int = Field(256, ge=16, description="Window the model sees (Border Correction input).")
    keep: int = Field(224, ge=8, description="Centre of each window kept in the output map.")
    batch_size: int | None = Field(
        None, ge=1,
        description="Windows per forward pass; null = auto (`rsseg.runtime.inference_batch_size`): "
        "1 on a CPU, where small forward passes stay in cache, 8 on a GPU.",
    )

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


