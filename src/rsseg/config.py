"""The run configuration: one YAML file parsed into typed pydantic models.

This schema is the single place where options are declared, each with its default and a
one-line doc (the ``description``). Unknown keys are rejected with the nearest valid key;
wrong types name the file, the key and the expected type.

Relative paths (``data.root``, ``output.dir``) are resolved against the current working
directory when the config is loaded, and the run directory stores the resolved, absolute
config, so a run can be resumed or evaluated from anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rsseg.config_errors import describe_error
from rsseg.errors import RsSegError


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, assignments re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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


class UNetConfig(Section):
    name: Literal["unet"] = Field("unet", description="Model from the registry (`rsseg models`).")
    base_width: int = Field(16, ge=4, description="Channels of the first level (seed: 64).")
    depth: int = Field(4, ge=1, le=6, description="Number of down-sampling steps.")
    up: Literal["transpose", "bilinear"] = Field(
        "transpose", description="Up-sampling: 2x2 transpose conv (seed baseline) or bilinear + 3x3."
    )


class UNetSmallConfig(Section):
    name: Literal["unet-small"] = Field(
        "unet-small", description="Model from the registry (`rsseg models list`)."
    )
    up: Literal["transpose", "bilinear"] = Field(
        "transpose", description="Up-sampling: 2x2 transpose conv or bilinear + 3x3 (widths 32-64-128-256)."
    )


class _SMPEncoderConfig(Section):
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


class DeepLabV3ResNet101Config(Section):
    name: Literal["deeplabv3-resnet101"] = Field(
        "deeplabv3-resnet101", description="Model from the registry (`rsseg models list`)."
    )


class DeepLabV3MobileNetConfig(Section):
    name: Literal["deeplabv3-mobilenetv3"] = Field(
        "deeplabv3-mobilenetv3", description="Model from the registry (`rsseg models list`)."
    )


class SegFormerConfig(Section):
    name: Literal["segformer"] = Field("segformer", description="Model from the registry (`rsseg models list`).")
    variant: Literal["b0", "b1", "b2", "b3", "b4", "b5"] = Field(
        "b0", description="MiT encoder size, b0 (3.7M params) to b5 (82M)."
    )
    decoder_channels: int = Field(256, ge=1, description="Width of the all-MLP decoder.")


ModelConfig = Annotated[
    UNetConfig
    | UNetSmallConfig
    | SMPUNetConfig
    | SMPUNetPlusPlusConfig
    | SMPDeepLabV3PlusConfig
    | DeepLabV3ResNet101Config
    | DeepLabV3MobileNetConfig
    | SegFormerConfig,
    Field(discriminator="name"),
]
"""A model section; ``name`` picks the class (default ``unet``)."""


LossName = Literal["ce", "focal", "dice", "jaccard", "lovasz"]


class LossTerm(Section):
    name: LossName = Field(description="Loss from the registry (`rsseg.losses.LOSSES`).")
    weight: float = Field(1.0, gt=0, description="Factor of this loss in the weighted sum.")


class LossConfig(Section):
    name: LossName = Field(
        "ce", description="Loss from the registry (`rsseg.losses.LOSSES`); unused when `terms` is set."
    )
    terms: list[LossTerm] | None = Field(
        None,
        min_length=1,
        description="Weighted sum of losses instead of `name`, e.g. [{name: ce}, {name: dice, weight: 0.5}].",
    )
    class_weights: Literal["inverse", "median"] | list[float] | None = Field(
        None,
        description="Per-class ce/focal weights: a list, inverse (N/(K*N_c)), median (median freq.), null = none.",
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="Cross-entropy label smoothing.")
    gamma: float = Field(2.0, ge=0.0, description="Focal exponent: (1 - p_t)^gamma down-weights easy pixels.")
    alpha: float | None = Field(
        None, gt=0.0, description="Focal constant factor alpha (Lin et al.); null = 1. Per class: class_weights."
    )
    smooth: float = Field(0.0, ge=0.0, description="Dice/Jaccard smoothing added to numerator and denominator.")

    @model_validator(mode="after")
    def _check(self) -> LossConfig:
        if self.terms is not None and self.name != "ce":
            raise ValueError("give either `name` or `terms`, not both (leave `name` unset with `terms`)")
        names = {t.name for t in self.terms} if self.terms is not None else {self.name}
        if self.class_weights is not None and not names & {"ce", "focal"}:
            raise ValueError("`class_weights` apply to ce and focal only, and no such loss is used")
        if isinstance(self.class_weights, list):
            if min(self.class_weights, default=0.0) < 0 or sum(self.class_weights) <= 0:
                raise ValueError("`class_weights` must be >= 0 with at least one positive")
        return self


class OptimConfig(Section):
    name: Literal["sgd", "adam", "adamw"] = Field("adam", description="Optimiser.")
    lr: float = Field(0.003, gt=0, description="Initial learning rate.")
    momentum: float = Field(0.9, ge=0, description="SGD momentum.")
    weight_decay: float = Field(1e-5, ge=0, description="Weight decay.")
    scheduler: Literal["poly", "step", "none"] = Field(
        "poly", description="LR schedule: polynomial decay over all steps, step decay, or none."
    )
    power: float = Field(0.9, gt=0, description="Power of the polynomial schedule (seed ADAM1: 2).")
    step_size: int = Field(15, ge=1, description="Epochs between step-LR decays (seed 001: 15).")
    gamma: float = Field(0.1, gt=0, description="Step-LR decay factor.")


class TrainConfig(Section):
    epochs: int = Field(10, ge=1, description="Maximum number of epochs.")
    max_minutes: float | None = Field(
        None, gt=0, description="Stop training after this wall-clock budget (checkpoints kept)."
    )
    seed: int = Field(0, description="Seed for weights, sampling and augmentation.")
    deterministic: bool = Field(True, description="Use deterministic algorithms (reproducible runs).")
    precision: Literal["auto", "bf16", "32"] = Field(
        "auto",
        description="bf16 autocast or fp32; auto = bf16 only where the hardware runs it natively.",
    )
    channels_last: Literal["auto", "on", "off"] = Field(
        "auto", description="channels_last memory format; auto = on for CPUs and with bf16."
    )
    accelerator: str = Field("auto", description="Lightning accelerator: auto, cpu, gpu.")
    devices: int | str = Field("auto", description="Lightning devices (number or 'auto').")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; null = library default.")
    limit_train_batches: int | float | None = Field(
        None, description="Batches per epoch (int) or fraction (float); null = all."
    )
    log_every_n_steps: int = Field(10, ge=1, description="Logging interval in steps.")


class InferConfig(Section):
    window: int = Field(256, ge=16, description="Window the model sees (Border Correction input).")
    keep: int = Field(224, ge=8, description="Centre of each window kept in the output map.")
    batch_size: int = Field(8, ge=1, description="Windows per forward pass.")

    @model_validator(mode="after")
    def _window_keep(self) -> InferConfig:
        if self.keep > self.window or (self.window - self.keep) % 2:
            raise ValueError("`keep` must be <= `window` and `window - keep` must be even")
        return self


class OutputConfig(Section):
    dir: Path = Field(Path("runs"), description="Parent folder of run directories.")
    name: str | None = Field(
        None, description="Run directory name; null = config file stem + timestamp."
    )


class Config(Section):
    data: DataConfig = Field(default_factory=DataConfig, description="What to train on.")
    model: ModelConfig = Field(default_factory=UNetConfig, description="Network architecture.")
    loss: LossConfig = Field(default_factory=LossConfig, description="Training loss.")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimiser and schedule.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training loop.")
    infer: InferConfig = Field(default_factory=InferConfig, description="Scene prediction.")
    output: OutputConfig = Field(default_factory=OutputConfig, description="Where runs go.")

    @field_validator("model", mode="before")
    @classmethod
    def _model_name_default(cls, value: Any) -> Any:
        if isinstance(value, dict) and "name" not in value:  # `name` defaults to unet
            return {"name": "unet", **value}
        return value

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
    if data is None:
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
    except yaml.YAMLError as exc:
        raise RsSegError(f"override {item!r}: value is not valid YAML: {exc}") from None
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RsSegError(f"override {item!r}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = value
