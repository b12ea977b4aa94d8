"""The `pretrain:` section: self-supervised pretraining of the model's encoder (`rsseg pretrain`).

A pretraining YAML is a normal config (`data`, `model`, `train`, `output`) plus this section:
`model` names the encoder to pretrain, `data` the dataset whose images (masks unused) are read,
`train` the precision, threads, seed and device. Defaults are sized for a CPU budget (small
views, SimCLR with in-batch negatives); see ``rsseg.ssl.method`` for why SimCLR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from rsseg.config.augment import AugmentConfig
from rsseg.config.base import Section


def ssl_augment() -> AugmentConfig:
    """SimCLR-strength photometric augmentation (in band std units) on top of D4; the random
    resized crop is done by the view sampler itself (``pretrain.crop_scale``)."""
    return AugmentConfig(
        d4=True,
        color_jitter={"p": 0.8, "brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.05},
        blur={"p": 0.5, "sigma": (0.1, 1.5)},
        noise={"p": 0.2, "std": (0.0, 0.1)},
    )


class PretrainConfig(Section):
    method: Literal["simclr"] = Field(
        "simclr", description="SSL method: simclr (NT-Xent on two views, in-batch negatives; CPU-friendly)."
    )
    temperature: float = Field(0.2, gt=0.0, le=1.0, description="NT-Xent softmax temperature.")
    projection_dim: int = Field(128, ge=8, description="Output width of the projection head.")
    hidden_dim: int = Field(512, ge=8, description="Hidden width of the 2-layer projection head.")
    epochs: int = Field(20, ge=1, description="Passes over the tile grid of all pretraining images.")
    max_minutes: float | None = Field(
        None, gt=0, description="Stop after this wall-clock budget (checkpoint and encoder kept)."
    )
    limit_batches: int | None = Field(None, ge=1, description="Batches per epoch; null = the whole tile grid.")
    batch_size: int = Field(64, ge=2, description="Tiles per batch (2x views; the other tiles are the negatives).")
    tile_size: int = Field(96, ge=16, description="Side in px of the region read per sample; both views come from it.")
    view_size: int = Field(64, ge=16, description="Side in px of each view (random resized crop of the region).")
    crop_scale: tuple[float, float] = Field(
        (0.3, 1.0), description="[low, high] area fraction of the region covered by a view's crop."
    )
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate (encoder and projection head).")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    warmup_steps: int = Field(20, ge=0, description="Linear learning-rate warm-up steps.")
    schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="After warm-up: cosine decay over the planned steps (epochs x batches) or constant."
    )
    dataset: bool = Field(True, description="Use the images of the `data:` dataset (masks unused).")
    splits: list[Literal["train", "val", "test"]] = Field(
        ["train"], description="Splits of that dataset whose images are used (keep test images out)."
    )
    images: list[str] = Field(
        default_factory=list,
        description="More unlabelled images: files, folders (searched recursively for tif/jpg/png) or globs.",
    )
    bands: list[int] | None = Field(
        None, description="1-based bands read from `images`; null = the dataset's bands (data.bands), else all."
    )
    multi_date: bool = Field(
        True, description="Pair tiles with the same ground in another raster (other date or sensor) as positives."
    )
    footprint: Literal["exact", "overlap"] = Field(
        "exact", description="Same ground = same CRS, transform and size (exact) or same CRS, overlapping bounds."
    )
    other_date_p: float = Field(
        0.5, ge=0.0, le=1.0, description="Probability that the second view comes from another date, when one exists."
    )
    decoded_cache: int = Field(64, ge=0, description="Whole decoded JPEG/PNG images kept per loader process.")
    augment: AugmentConfig = Field(default_factory=ssl_augment, description="Photometric and D4 view augmentation.")
    export: Literal["safetensors", "pt"] = Field(
        "safetensors", description="Format of the exported encoder (RUN/encoder.<ext>), loadable by `pretrained:`."
    )

    @field_validator("crop_scale")
    @classmethod
    def _crop(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got [{lo}, {hi}]")
        return value

    @field_validator("images")
    @classmethod
    def _absolute(cls, value: list[str]) -> list[str]:
        """Relative entries are resolved against the CWD when read, like `data.root`."""
        out = []
        for entry in value:
            path = Path(entry).expanduser()
            out.append(str(path if path.is_absolute() else Path.cwd() / path))
        return out

    @field_validator("bands")
    @classmethod
    def _bands(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or min(value) < 1):
            raise ValueError("pretrain.bands lists 1-based band numbers (at least one)")
        return value

    @model_validator(mode="after")
    def _check(self) -> PretrainConfig:
        if self.view_size > self.tile_size:
            raise ValueError(f"view_size ({self.view_size}) must not exceed tile_size ({self.tile_size})")
        if not self.dataset and not self.images:
            raise ValueError("nothing to pretrain on: set `dataset: true` or list `images`")
        return self
