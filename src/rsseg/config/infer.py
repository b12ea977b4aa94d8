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
    """Every option of a prediction run (predict, evaluate, explain, calibrate), in one place.

    A checkpoint carries its run's section; ``rsseg predict`` flags and library keywords
    override single fields, and ``rsseg.infer.options.PredictOptions.build`` merges the two
    once per run. The names of modes, blendings, confidences and vector formats are the keys
    of registries in ``rsseg.infer`` and ``rsseg.gis`` (a test keeps these lists equal to them).
    """

    mode: Literal["reference", "fast", "whole", "naive"] = Field(
        "reference",
        description="Default window layout of predict/evaluate (`--mode` overrides): reference = the "
        "seed's Border Correction (window/keep); fast = the same margin around large tiles; whole = "
        "the scene in one forward pass (at most 16 Mpix); naive = no margin, for seam comparisons.",
    )
    window: int = Field(256, ge=16, description="Window the model sees (Border Correction input).")
    keep: int = Field(224, ge=8, description="Centre of each window kept in the output map.")
    fast_tile: int = Field(1024, ge=16, description="fast mode: largest kept tile side in px.")
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
    low_memory: bool = Field(
        False, description="Forward passes of at most 4 x 256² px (`rsseg.infer.options.LOW_MEMORY_PIXELS`); "
        "reference maps do not change, fast maps change as with a smaller fast_tile, whole is refused.",
    )
    blend: Literal["linear", "cosine"] | None = Field(
        None, description="Blend overlapping window margins instead of cutting them (needs window > keep).")
    tta: bool = Field(False, description="Average the 8 D4 views of every window (8x the time).")
    probabilities: bool = Field(False, description="Also write <name>_probabilities.tif (uint8 per class).")
    confidence: Literal["max", "margin", "entropy"] | None = Field(
        None, description="Also write <name>_confidence.tif with this measure (254 = sure).")
    disagreement: bool = Field(
        False, description="With tta: <name>_disagreement.tif, the share of D4 views that differ.")
    preview_max: int = Field(2048, ge=1, description="Longest side of the colour and blend PNG previews.")
    overviews: bool = Field(False, description="Internal overviews in the GeoTIFFs, for GIS viewers.")
    cog: bool = Field(True, description="Rewrite the finished rasters as Cloud-Optimized GeoTIFFs.")
    vector: Literal["gpkg", "parquet", "geojson"] | None = Field(
        None, description="Also write <name>_polygons in this format.")
    simplify: float | None = Field(
        None, gt=0, description="With vector: simplify edges (map units), shared edges kept shared.")
    min_area: float | None = Field(
        None, gt=0, description="With vector: merge regions under this area (m²) into a neighbour.")
    stac: bool = Field(True, description="A STAC Item per scene (<name>_item.json).")
    skip_existing: bool = Field(False, description="Skip scenes whose outputs all exist (resume a batch).")

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_from_yaml(cls, value: Any) -> Any:
        """YAML reads ``precision: 32`` as a number: take it as the string it means."""
        return "32" if isinstance(value, int) and not isinstance(value, bool) and value == 32 else value

    @model_validator(mode="after")
    def _consistent(self) -> InferConfig:
        """The rules between options; each message names the options as `rsseg predict` spells them."""
        if problem := border_problem(self.window, self.keep):
            raise ValueError(f"invalid border correction window {self.window} / keep {self.keep}: {problem}")
        margin = (self.window - self.keep) // 2
        if self.mode == "whole" and self.low_memory:
            raise ValueError("low_memory caps forward passes, but mode whole is one pass over the scene: "
                             "use mode fast with low_memory")
        if self.blend is not None:
            if self.mode in ("naive", "whole") or margin == 0:
                raise ValueError(f"blending needs a margin (window > keep) and not the {self.mode} mode")
            if self.keep < 2 * margin:
                raise ValueError(f"blending needs keep >= 2 x margin, got keep {self.keep}, margin {margin}")
        if self.disagreement and (not self.tta or self.blend is not None):
            raise ValueError("disagreement needs tta (the 8 D4 views) and no blend")
        if self.vector is None and (self.simplify is not None or self.min_area is not None):
            raise ValueError("simplify and min_area shape the polygons: add vector (gpkg, parquet or geojson)")
        return self


class OutputConfig(Section):
    dir: Path = Field(Path("runs"), description="Parent folder of run directories.")
    name: str | None = Field(
        None, description="Run directory name; null = config file stem + timestamp."
    )


