"""The `model:` section: one config class per registered architecture (a tagged union)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from rsseg.config.base import Section

_WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors", ".npz")


class _ModelSection(Section):
    """Options every model has: encoder weights from a local file or a built-in source."""

    pretrained: str | None = Field(
        None,
        description="Encoder weights: a local .pth/.pt/.safetensors/.npz file or a built-in source "
        "(`rsseg models weights`); null = random init. Never downloaded.",
    )

    @field_validator("pretrained")
    @classmethod
    def _offline_weights(cls, value: str | None) -> str | None:
        # a bare name (no path, no weights suffix) can only mean a hub download: refuse it now;
        # paths are checked when the model is built (a saved config may name a file elsewhere)
        if value is None:
            return None
        # lazy: the weights-source registry imports torch; configs load without it
        from rsseg.models.pretrained import not_found_message, weights_sources

        if value in weights_sources:
            return value
        path = Path(value).expanduser()
        if path.is_file():
            return str(path.resolve())  # like data.root: the run's config holds absolute paths
        looks_like_path = path.suffix.lower() in _WEIGHT_SUFFIXES or "/" in value or "\\" in value
        if not looks_like_path:
            raise ValueError(not_found_message(value, "not a local file"))
        return value


class UNetConfig(_ModelSection):
    name: Literal["unet"] = Field("unet", description="Model from the registry (`rsseg models`).")
    base_width: int = Field(16, ge=4, description="Channels of the first level (seed: 64).")
    depth: int = Field(4, ge=1, le=6, description="Number of down-sampling steps.")
    up: Literal["transpose", "bilinear"] = Field(
        "transpose", description="Up-sampling: 2x2 transpose conv (seed baseline) or bilinear + 3x3."
    )


class UNetSmallConfig(_ModelSection):
    name: Literal["unet-small"] = Field(
        "unet-small", description="Model from the registry (`rsseg models list`)."
    )
    up: Literal["transpose", "bilinear"] = Field(
        "transpose", description="Up-sampling: 2x2 transpose conv or bilinear + 3x3 (widths 32-64-128-256)."
    )


class _SMPEncoderConfig(_ModelSection):
    """Shared options of the segmentation-models-pytorch models (random init, no download)."""

    name: str = Field(description="Model from the registry (`rsseg models list`).")
    encoder: str = Field(
        "resnet34", description="SMP encoder, e.g. resnet18/34/50/101, mobilenet_v2, timm-tf_efficientnet_lite0."
    )
    encoder_depth: int = Field(5, ge=3, le=5, description="Encoder stages used (output stride 2**depth).")


class _SMPUNetLikeConfig(_SMPEncoderConfig):
    decoder_channels: list[int] | None = Field(
        None,
        description="Decoder widths, one per encoder stage; null = (256, 128, 64, 32, 16)[:encoder_depth].",
    )

    @model_validator(mode="after")
    def _decoder_per_stage(self) -> _SMPUNetLikeConfig:
        channels = self.decoder_channels
        if channels is not None and (len(channels) != self.encoder_depth or min(channels) < 1):
            raise ValueError("`decoder_channels` needs one positive width per encoder stage (`encoder_depth`)")
        return self


class SMPUNetConfig(_SMPUNetLikeConfig):
    name: Literal["smp-unet"] = Field("smp-unet", description="Model from the registry (`rsseg models list`).")


class SMPUNetPlusPlusConfig(_SMPUNetLikeConfig):
    name: Literal["smp-unetplusplus"] = Field(
        "smp-unetplusplus", description="Model from the registry (`rsseg models list`)."
    )


class SMPDeepLabV3PlusConfig(_SMPEncoderConfig):
    name: Literal["smp-deeplabv3plus"] = Field(
        "smp-deeplabv3plus", description="Model from the registry (`rsseg models list`)."
    )
    decoder_channels: int = Field(256, ge=1, description="Width of the ASPP decoder.")


class DeepLabV3ResNet101Config(_ModelSection):
    name: Literal["deeplabv3-resnet101"] = Field(
        "deeplabv3-resnet101", description="Model from the registry (`rsseg models list`)."
    )


class DeepLabV3MobileNetConfig(_ModelSection):
    name: Literal["deeplabv3-mobilenetv3"] = Field(
        "deeplabv3-mobilenetv3", description="Model from the registry (`rsseg models list`)."
    )


class SegFormerConfig(_ModelSection):
    name: Literal["segformer"] = Field("segformer", description="Model from the registry (`rsseg models list`).")
    variant: Literal["b0", "b1", "b2", "b3", "b4", "b5"] = Field(
        "b0", description="MiT encoder size, b0 (3.7M params) to b5 (82M)."
    )
    decoder_channels: int = Field(256, ge=1, description="Width of the all-MLP decoder.")


class SwinUNetConfig(_ModelSection):
    name: Literal["swin-unet"] = Field("swin-unet", description="Model from the registry (`rsseg models list`).")
    decoder_channels: list[PositiveInt] = Field(
        [256, 128, 64, 32, 16],
        min_length=5,
        max_length=5,
        description="U-Net decoder widths at strides 16, 8, 4, 2, 1 (Swin-T encoder, seed 002).",
    )
    drop_path_rate: float = Field(0.1, ge=0.0, lt=1.0, description="Stochastic depth of the Swin-T blocks.")


ModelConfig = Annotated[
    UNetConfig
    | UNetSmallConfig
    | SMPUNetConfig
    | SMPUNetPlusPlusConfig
    | SMPDeepLabV3PlusConfig
    | DeepLabV3ResNet101Config
    | DeepLabV3MobileNetConfig
    | SegFormerConfig
    | SwinUNetConfig,
    Field(discriminator="name"),
]
"""A model section; ``name`` picks the class (default ``unet``)."""


