"""The `data:` section: which dataset, how it is split, tiled, normalised and augmented."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from rsseg.config.augment import AugmentConfig
from rsseg.config.base import Section

#: Registered dataset loaders (kept in sync with ``rsseg.data.DATASETS`` by a test).
DATASET_NAMES = (
    "synthetic, folder, multispectral, gid15, landcoverai, deepglobe, loveda, flair1, "
    "potsdam, vaihingen, dubai, vector"
)

Color = tuple[int, int, int]
NonFinite = Literal["nan", "inf", "-inf"]  # float image pixels that are no data (YAML .nan, .inf too)


def _non_finite(value: object) -> str | None:
    """``.nan`` / ``"NaN"`` -> ``"nan"``, ``.inf`` -> ``"inf"``, ``-.inf`` -> ``"-inf"``; else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    text = value.strip().lower().removeprefix("+") if isinstance(value, str) else ""
    names = {"nan": "nan", ".nan": "nan", "inf": "inf", ".inf": "inf", "-inf": "-inf", "-.inf": "-inf"}
    return names.get(text)


def parse_color(value: object) -> Color:
    """``"#3C1098"``, ``"3c1098"`` or ``[60, 16, 152]`` -> ``(60, 16, 152)``."""
    if isinstance(value, str):
        text = value.strip().removeprefix("#")
        if not re.fullmatch(r"[0-9a-fA-F]{6}", text):
            raise ValueError(f"colour {value!r} is not #RRGGBB")
        return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
    if isinstance(value, list | tuple) and len(value) == 3:
        rgb = tuple(int(v) for v in value)
        if all(0 <= v <= 255 for v in rgb) and all(float(v) == int(v) for v in value):
            return rgb  # type: ignore[return-value]
    raise ValueError(f"colour {value!r} is neither #RRGGBB nor [r, g, b] with values 0..255")


class SyntheticConfig(Section):
    train: int = Field(8, ge=1, description="Number of synthetic training scenes.")
    val: int = Field(2, ge=1, description="Number of synthetic validation scenes.")
    test: int = Field(2, ge=1, description="Number of synthetic test scenes.")
    size: int = Field(512, ge=64, description="Side length in pixels of each synthetic scene.")
    seed: int = Field(0, description="Seed of the scene generator (same seed, same data).")


class ClassSpec(Section):
    """One class of a `folder`/`multispectral` dataset: how it is written in the masks."""

    name: str = Field(..., min_length=1, description="Class name.")
    color: Color | None = Field(
        None, description="Display colour, and the mask colour when `mask_encoding: color`."
    )
    value: int | None = Field(
        None, description="Mask value of the class (index masks); null = the class's position."
    )
    ignore: bool = Field(False, description="Left out of loss and metrics (like `ignore_classes`).")

    @field_validator("color", mode="before")
    @classmethod
    def _color(cls, value: object) -> object:
        return None if value is None else parse_color(value)


class SplitConfig(Section):
    """Scene-level split: named lists, seeded ratios, or (all unset) the dataset's official one."""

    train: list[str] | None = Field(
        None, description="Scene ids or groups (globs allowed, e.g. 'Tile 1') of the train split."
    )
    val: list[str] | None = Field(None, description="Scene ids or groups of the validation split.")
    test: list[str] | None = Field(None, description="Scene ids or groups of the test split.")
    ratios: tuple[float, float, float] | None = Field(
        None, description="Train/val/test fractions of the groups, drawn with `seed`."
    )
    seed: int = Field(0, description="Seed of the ratio split (same seed, same split).")

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, value: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        if value is not None and (min(value) < 0 or sum(value) <= 0):
            raise ValueError("ratios must be >= 0 and not all zero")
        return value

    @model_validator(mode="after")
    def _one_mode(self) -> SplitConfig:
        if self.ratios is not None and self.has_lists:
            raise ValueError("give either scene lists (train/val/test) or `ratios`, not both")
        return self

    @property
    def has_lists(self) -> bool:
        return any(v is not None for v in (self.train, self.val, self.test))


ClassRef = int | str  # a class by index or by name


class LabelsConfig(Section):
    """Vector labels of `dataset: vector`, rasterised per image into cached masks (rsseg.data.vector)."""

    vector: Path = Field(..., description="Vector file (GeoJSON, GeoPackage, Shapefile, ...); relative to `root`.")
    layer: str | int | None = Field(None, description="Layer of a multi-layer file (name or index).")
    encoding: str | None = Field(None, description="Text encoding of the attributes, e.g. latin1 for old shapefiles.")
    vector_crs: str | None = Field(None, description="CRS of the vectors when the file has none or a wrong one.")
    attribute: str | None = Field(None, description="Attribute holding the class; null = every feature is `default_class`.")
    mapping: dict[str | int, ClassRef] | None = Field(
        None, description="Attribute value -> class (name or index, or 'ignore'); null = the attribute holds classes."
    )
    default_class: ClassRef = Field(1, description="Class of features without `attribute` (name or index).")
    unknown: Literal["error", "ignore", "default", "skip"] = Field(
        "error", description="Attribute values with no class: error, ignore (no label), default class, or skip."
    )
    background: ClassRef = Field(
        0, description="Class of pixels no feature covers; 'ignore' (no label) for partially labelled data."
    )
    all_touched: bool = Field(False, description="Burn every pixel a feature touches (not only centres inside).")
    buffer_pixels: float = Field(0.0, ge=0, description="Widen points and lines by this many pixels.")
    burn_order: Literal["area", "file"] = Field("area", description="Larger features first (area) or file order.")
    repair: bool = Field(True, description="Repair invalid geometries (make_valid) instead of failing.")
    xyz_pattern: str | None = Field(
        None, description="Name pattern of XYZ web-map chips, e.g. 'OAM-{x}-{y}-{z}'; null = georeferenced images."
    )
    group_zoom: int | None = Field(
        None, ge=0, le=30,
        description="XYZ chips: split groups are ancestor tiles at this zoom; null = the coarsest chip zoom.",
    )


class SkipConfig(Section):
    """Leave out chips dominated by a majority class (seed 004: p 0.7 over 70 % agriculture)."""

    majority: list[ClassRef] = Field(..., min_length=1, description="Majority classes (names or indices).")
    share: float = Field(0.7, ge=0, le=1, description="A chip is dominated above this share of counted pixels.")
    p: float = Field(0.7, ge=0, le=1, description="Probability of leaving a dominated chip out.")
    protect: list[ClassRef] = Field(
        default_factory=list, description="Chips holding any of these classes are never left out."
    )


class SamplingConfig(Section):
    """Class-aware oversampling of the training chips (rsseg.data.balance)."""

    repeats: dict[ClassRef, float] | None = Field(
        None, description="Class -> repeat factor; a chip gets the largest factor of the classes it holds."
    )
    threshold: float | None = Field(
        None, gt=0, description="LVIS repeat-factor sampling threshold (instead of `repeats`)."
    )
    default: float = Field(1.0, ge=0, description="Repeat factor of chips holding no class of `repeats`.")
    min_pixels: int = Field(1, ge=1, description="Pixels a class needs to count as present in a chip.")
    skip: SkipConfig | None = Field(None, description="Leave out chips dominated by a majority class.")
    mode: Literal["expand", "weighted"] = Field(
        "expand",
        description="expand: one expanded chip list drawn once (seed), shuffled each epoch; "
        "weighted: a WeightedRandomSampler drawing round(sum of weights) chips per epoch.",
    )
    seed: int = Field(0, description="Seed of the expanded list (mode: expand).")

    @model_validator(mode="after")
    def _one_source(self) -> SamplingConfig:
        if self.repeats is not None and self.threshold is not None:
            raise ValueError("give `repeats` or `threshold`, not both")
        if self.repeats is None and self.threshold is None and self.skip is None:
            raise ValueError("sampling needs `repeats`, `threshold` or `skip`")
        if self.repeats is not None and any(v < 0 for v in self.repeats.values()):
            raise ValueError("repeat factors must be >= 0")
        return self


class RestrictConfig(Section):
    """Seed 003's restricted subset: drop training chips dominated by one class."""

    max_share: float = Field(0.5, gt=0, le=1, description="Drop a chip where one listed class covers more than this.")
    classes: list[ClassRef] | None = Field(None, description="Classes checked (names or indices).")
    top_k: int | None = Field(
        None, ge=1, description="Check the k most frequent training classes instead; both unset = every class."
    )

    @model_validator(mode="after")
    def _one_list(self) -> RestrictConfig:
        if self.classes is not None and self.top_k is not None:
            raise ValueError("give `classes` or `top_k`, not both")
        return self


class DataConfig(Section):
    dataset: str = Field(
        "synthetic", description=f"Dataset loader from the registry (`rsseg.data.datasets.DATASETS`): {DATASET_NAMES}."
    )
    root: Path = Field(Path("data/synthetic"), description="Dataset folder (may be read-only).")
    synthetic: SyntheticConfig = Field(
        default_factory=SyntheticConfig, description="Generator settings for `dataset: synthetic`."
    )
    variant: str | None = Field(
        None, description="Dataset variant: flair1 'baseline' (13 classes, default) or 'full' (19)."
    )
    image_dir: str = Field("images", description="Image sub-folder of each split (folder layout).")
    mask_dir: str = Field("masks", description="Mask sub-folder of each split (folder layout).")
    image_glob: str = Field("*.tif", description="Glob for image files inside `image_dir`.")
    images: str | None = Field(
        None, description="Glob of image files under `root` (folder/multispectral: overrides the split folders; vector)."
    )
    masks: str | None = Field(None, description="Glob of mask files under `root`, paired with images by stem.")
    image_suffix: str = Field("", description="End of image stems dropped before pairing (e.g. '_sat').")
    mask_suffix: str = Field("", description="End of mask stems dropped before pairing (e.g. '_mask').")
    group_pattern: str | None = Field(
        None, description="Regex on the image path under root; its first group is the split unit."
    )
    classes: list[ClassSpec] | None = Field(
        None, description="Class table of a folder/multispectral dataset; null = `classes_file`."
    )
    classes_file: Path | None = Field(
        None, description="Class table JSON; null = ROOT/classes.json (folder/multispectral)."
    )
    mask_encoding: Literal["index", "color"] = Field(
        "index", description="Folder/multispectral masks hold class values (index) or RGB colours (color)."
    )
    nodata_values: list[int | Color | NonFinite] = Field(
        default_factory=list,
        description="Mask values or colours meaning 'no label' (255 always means no label in index masks); "
        "nan, inf, -inf: such float image pixels are no data (read as 0, unlabelled) instead of an error.",
    )
    unknown_colors: Literal["error", "ignore"] = Field(
        "error", description="A mask value/colour outside the class table: error, or treat as no label."
    )
    ignore_classes: list[str | int] = Field(
        default_factory=list,
        description="Classes (names or indices) excluded from loss and metrics, e.g. background.",
    )
    learn_classes: list[str | int] = Field(
        default_factory=list,
        description="Classes the dataset ignores by default that training learns as ordinary classes "
        "(seed 000 §5.3.2 'learned background'); metrics still leave them out, so runs compare.",
    )
    bands: list[int | str] | None = Field(
        None, description="Bands to read: 1-based numbers or band names; null = all bands."
    )
    band_names: list[str] | None = Field(
        None, description="Names of the image bands; null = the GeoTIFF band descriptions."
    )
    mean: list[float] | None = Field(
        None, description="Per-band mean in raw pixel units; null = computed from training data (cached)."
    )
    std: list[float] | None = Field(
        None, description="Per-band std in raw pixel units; null = computed from training data (cached)."
    )
    split: SplitConfig | None = Field(
        None, description="Scene-level split (lists or ratios); null = the dataset's official split."
    )
    exclude: Path | None = Field(
        None, description="JSON list of scene ids or image paths to leave out (bad scenes; `rsseg data check`)."
    )
    labels: LabelsConfig | None = Field(None, description="Vector labels of `dataset: vector`.")
    subset: Path | None = Field(
        None, description="Tile list of `rsseg data balance`: train only on the chips nearest those tiles (rsseg.data.subset)."
    )
    balance: int | float | None = Field(
        None, gt=0, description="Entropy-Based Balancing at the start of training (seed 000 §5.3.1): train on this "
        "many chips (an integer) or this share of them (a number below 1), chosen greedily from the training "
        "chips' cached class histograms to balance the class priors; the selection `rsseg data balance --size N` "
        "writes for `data.subset`, without the file. Applied after `data.subset`.",
    )
    restrict: RestrictConfig | None = Field(None, description="Drop training chips dominated by one class.")
    sampling: SamplingConfig | None = Field(None, description="Class-aware oversampling of the training chips.")
    on_error: Literal["raise", "skip"] = Field(
        "raise", description="A bad file (unreadable, size mismatch, unknown values): raise, or skip and report."
    )
    cache_dir: Path | None = Field(
        None, description="Chip index and statistics cache; null = $RSSEG_CACHE_DIR, else $XDG_CACHE_HOME/rsseg, "
        "else ~/.cache/rsseg."
    )
    decoded_cache: int = Field(
        4, ge=0, description="Whole decoded JPEG/PNG scenes kept per loader process (no windowed reads)."
    )
    tile_size: int = Field(224, ge=16, description="Side of the training/validation chips in pixels.")
    random_shift: int = Field(
        20, ge=0, description="Random shift (+-px) of each training chip (seed 000 'Random Shift'); crop: grid only."
    )
    crop: Literal["grid", "random"] = Field(
        "grid",
        description="Training reads: grid (the fixed chip grid, moved by random_shift) or random (a tile_size "
        "window anywhere in the chip's scene; scenes still drawn per chip, so by area). Validation: always grid.",
    )
    normalization: Literal["dataset", "imagenet"] = Field(
        "dataset",
        description="Per-band mean/std when data.mean/std are unset: dataset (the training scenes' statistics) "
        "or imagenet (ImageNet RGB statistics x255; 3-band 8-bit imagery only).",
    )
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig,
        description="Training-chip augmentations (d4, scale, blur, color_jitter, noise); true/false = D4 on/off.",
    )
    batch_size: int = Field(8, ge=1, description="Training and validation batch size.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")

    @field_validator("bands")
    @classmethod
    def _bands_valid(cls, value: list[int | str] | None) -> list[int | str] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("the band list must not be empty")
        if any(isinstance(b, int) and b < 1 for b in value):
            raise ValueError("band numbers are 1-based")
        return value

    @field_validator("nodata_values", mode="before")
    @classmethod
    def _nodata(cls, value: object) -> object:
        if not isinstance(value, list):
            return value
        return [v if isinstance(v, int) and not isinstance(v, bool) else _non_finite(v) or parse_color(v)
                for v in value]

    @field_validator("classes_file", "exclude", "cache_dir", "subset")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        """Resolved when the config is read, like `root`, so saved configs work from anywhere."""
        return None if value is None else value.expanduser().absolute()

    @field_validator("group_pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _balance_size(self) -> DataConfig:
        if isinstance(self.balance, float) and self.balance >= 1:
            raise ValueError("`balance` is a chip count (an integer) or a share below 1, e.g. 0.11")
        return self

    @model_validator(mode="after")
    def _mean_std_pair(self) -> DataConfig:
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both `mean` and `std`, or neither")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != len(self.std):
                raise ValueError("`mean` and `std` must have one value per band")
            if min(self.std) <= 0:
                raise ValueError("`std` values must be positive")
        if self.classes is not None and not self.classes:
            raise ValueError("`classes` must list at least one class")
        if self.labels is not None and self.dataset != "vector":
            raise ValueError("`labels` (vector labels) is for `dataset: vector`")
        return self
