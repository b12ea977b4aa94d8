"""The `data.augment:` section: random augmentations of training chips, all off except D4.

Photometric options act on *normalised* chips (per band mean 0, std 1), so their magnitudes
are in band standard deviations, not in raw pixel units; see ``rsseg.data.augment``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from rsseg.config.base import Section


def _check_range(value: tuple[float, float], name: str, *, allow_zero: bool = False) -> tuple[float, float]:
    lo, hi = value
    if lo > hi:
        raise ValueError(f"{name} must be [low, high] with low <= high, got [{lo}, {hi}]")
    if lo < 0 or (lo == 0 and not allow_zero):
        raise ValueError(f"{name} values must be {'>=' if allow_zero else '>'} 0, got [{lo}, {hi}]")
    return value


def _probability(default: float, what: str) -> Any:
    return Field(default, ge=0.0, le=1.0, description=f"Probability of {what} a chip (0 = off).")


class BlurConfig(Section):
    p: float = _probability(0.0, "Gaussian-blurring")
    sigma: tuple[float, float] = Field(
        (0.5, 1.5), description="[low, high] range of the blur sigma in pixels (kernel sized from sigma)."
    )

    @field_validator("sigma")
    @classmethod
    def _sigma(cls, value: tuple[float, float]) -> tuple[float, float]:
        return _check_range(value, "blur.sigma")


class ScaleConfig(Section):
    p: float = _probability(0.0, "rescaling")
    range: tuple[float, float] = Field(
        (0.75, 1.25),
        description="[low, high] zoom factor; the chip is then cropped/padded back (mask pad = ignore).",
    )

    @field_validator("range")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        return _check_range(value, "scale.range")


class ColorJitterConfig(Section):
    p: float = _probability(0.0, "colour-jittering")
    brightness: float = Field(
        0.2, ge=0.0, description="Max additive shift, in band std units, drawn in [-b, b] (all bands)."
    )
    contrast: float = Field(
        0.2, ge=0.0, le=1.0, description="Contrast factor drawn in [1-c, 1+c], applied about each band's chip mean."
    )
    saturation: float = Field(
        0.0, ge=0.0, le=1.0, description="Saturation factor in [1-s, 1+s]; 3-band images only, else skipped."
    )
    hue: float = Field(
        0.0, ge=0.0, le=0.5, description="Hue rotation in [-h, h] turns about the grey axis; 3-band images only."
    )
    per_band: bool = Field(
        False, description="Draw brightness/contrast independently per band instead of once per chip."
    )


class NoiseConfig(Section):
    p: float = _probability(0.0, "adding Gaussian noise to")
    std: tuple[float, float] = Field(
        (0.01, 0.1), description="[low, high] range of the noise std, in band std units."
    )

    @field_validator("std")
    @classmethod
    def _std(cls, value: tuple[float, float]) -> tuple[float, float]:
        return _check_range(value, "noise.std", allow_zero=True)


class AugmentConfig(Section):
    """``true`` means the defaults (D4 only, as before this section existed), ``false`` all off."""

    d4: bool = Field(True, description="Random flips and 90-degree rotations (the 8 symmetries of a square).")
    scale: ScaleConfig = Field(default_factory=ScaleConfig, description="Random zoom in/out, chip size kept.")
    color_jitter: ColorJitterConfig = Field(
        default_factory=ColorJitterConfig, description="Brightness/contrast (any bands), saturation/hue (3 bands)."
    )
    blur: BlurConfig = Field(default_factory=BlurConfig, description="Gaussian blur of the image (mask untouched).")
    noise: NoiseConfig = Field(default_factory=NoiseConfig, description="Additive Gaussian noise on the image.")

    @model_validator(mode="before")
    @classmethod
    def _legacy_bool(cls, value: Any) -> Any:
        """Accept the old ``augment: true|false`` switch (it only ever meant D4)."""
        if isinstance(value, bool):
            return {"d4": value}
        return value

    @property
    def enabled(self) -> bool:
        """Whether any augmentation can change a chip."""
        return self.d4 or any(s.p > 0 for s in (self.scale, self.color_jitter, self.blur, self.noise))
