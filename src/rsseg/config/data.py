"""The `data:` section: which dataset, how it is split, tiled, normalised and augmented."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from rsseg.config.base import Section


class SyntheticConfig(Section):
    train: int = Field(8, ge=1, description="Number of synthetic training scenes.")
    val: int = Field(2, ge=1, description="Number of synthetic validation scenes.")
    test: int = Field(2, ge=1, description="Number of synthetic test scenes.")
    size: int = Field(512, ge=64, description="Side length in pixels of each synthetic scene.")
    seed: int = Field(0, description="Seed of the scene generator (same seed, same data).")


class DataConfig(Section):
    dataset: str = Field(
        "synthetic",
        description="Dataset loader from the registry (`rsseg.data.DATASETS`): synthetic, folder.",
    )
    root: Path = Field(Path("data/synthetic"), description="Dataset folder.")
    synthetic: SyntheticConfig = Field(
        default_factory=SyntheticConfig, description="Generator settings for `dataset: synthetic`."
    )
    image_dir: str = Field("images", description="Image sub-folder of each split (folder layout).")
    mask_dir: str = Field("masks", description="Mask sub-folder of each split (folder layout).")
    image_glob: str = Field("*.tif", description="Glob for image files inside `image_dir`.")
    ignore_classes: list[str | int] = Field(
        default_factory=list,
        description="Classes (names or indices) excluded from loss and metrics, e.g. background.",
    )
    bands: list[int] | None = Field(
        None, description="1-based band numbers to read (as GDAL/rasterio count); null = all bands."
    )
    mean: list[float] | None = Field(
        None, description="Per-band mean in raw pixel units; null = computed from training data."
    )
    std: list[float] | None = Field(
        None, description="Per-band std in raw pixel units; null = computed from training data."
    )
    tile_size: int = Field(224, ge=16, description="Side of the training/validation chips in pixels.")
    random_shift: int = Field(
        20, ge=0, description="Random shift (+-px) of each training chip (seed 000 'Random Shift')."
    )
    augment: bool = Field(True, description="Random flips and 90-degree rotations of training chips.")
    batch_size: int = Field(8, ge=1, description="Training and validation batch size.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")

    @field_validator("bands")
    @classmethod
    def _bands_positive(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or min(value) < 1):
            raise ValueError("band numbers are 1-based and the list must not be empty")
        return value

    @model_validator(mode="after")
    def _mean_std_pair(self) -> DataConfig:
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both `mean` and `std`, or neither")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != len(self.std):
                raise ValueError("`mean` and `std` must have one value per band")
            if min(self.std) <= 0:
                raise ValueError("`std` values must be positive")
        return self


