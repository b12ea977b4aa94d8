"""Class tables from configs and JSON files, and the codecs they imply.

A user-defined table (``data.classes`` or a classes.json) gives per class a name, a colour, a
mask value (index masks) and an ignore flag. Two JSON forms are read:
``{"names": [...], "colors": [[r, g, b], ...], "ignore": [...], "values": [...]}`` (what rsseg
writes) and ``{"classes": [{"name", "color", "value", "ignore"}, ...], "nodata": [...]}``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pydantic import ValidationError

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.config.data import ClassSpec, Color, DataConfig, parse_color
from rsseg.data.codecs import ColorCodec, IndexCodec, MaskCodec
from rsseg.errors import RsSegError

#: Display colours for classes that have none (distinct, readable on white and black).
PALETTE: tuple[Color, ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
)


def _class_index(table: ClassTable, item: str | int, key: str) -> int:
    if isinstance(item, int):
        if not 0 <= item < table.num_classes:
            raise RsSegError(f"{key}: index {item} outside 0..{table.num_classes - 1}")
        return item
    if item in table.names:
        return table.names.index(item)
    raise RsSegError(f"{key}: unknown class '{item}'; classes: {', '.join(table.names)}")


def with_ignored(
    table: ClassTable, ignore: list[str | int], learn: list[str | int] = ()  # type: ignore[assignment]
) -> ClassTable:
    """Resolve ``ignore_classes`` onto the table, minus ``learn_classes`` (names or indices)."""
    indices = set(table.ignore) | {_class_index(table, item, "ignore_classes") for item in ignore}
    indices -= {_class_index(table, item, "learn_classes") for item in learn}
    return dataclasses.replace(table, ignore=tuple(sorted(indices)))


def metric_classes(table: ClassTable, data_cfg: DataConfig) -> ClassTable:
    """The table metrics use: ignored and learned-but-not-scored classes both left out."""
    return with_ignored(table, [*data_cfg.ignore_classes, *data_cfg.learn_classes])


def table(names: list[str], colors: list[Color], ignore: tuple[int, ...] = ()) -> ClassTable:
    return ClassTable(names=tuple(names), colors=tuple(colors), ignore=ignore)


def specs_table(specs: list[ClassSpec]) -> ClassTable:
    colors = [s.color or PALETTE[i % len(PALETTE)] for i, s in enumerate(specs)]
    ignore = tuple(i for i, s in enumerate(specs) if s.ignore)
    return table([s.name for s in specs], colors, ignore)


def specs_codec(specs: list[ClassSpec], cfg: DataConfig, where: str) -> MaskCodec:
    """Index masks: class value (default: its position) -> index; colour masks: colour -> index."""
    ints = [v for v in cfg.nodata_values if isinstance(v, int)]
    colors = [tuple(v) for v in cfg.nodata_values if not isinstance(v, int | str)]  # str: image nan/inf
    if cfg.mask_encoding == "color":
        missing = [s.name for s in specs if s.color is None]
        if missing:
            raise RsSegError(f"{where}: mask_encoding is color but classes {missing} have no colour")
        if ints:
            raise RsSegError(f"data.nodata_values: {ints} are values, but masks are colour-coded")
        mapping = {tuple(c): IGNORE_INDEX for c in colors}
        for i, s in enumerate(specs):
            if s.color in mapping and mapping[s.color] != IGNORE_INDEX:
                raise RsSegError(f"{where}: colour {s.color} is used by two classes")
            mapping[s.color] = i  # type: ignore[index]
        return ColorCodec(mapping, cfg.unknown_colors)
    if colors:
        raise RsSegError(f"data.nodata_values: {colors} are colours, but masks hold class values")
    values: dict[int, int] = {v: IGNORE_INDEX for v in ints}
    for i, s in enumerate(specs):
        value = i if s.value is None else s.value
        if value in values and values[value] != IGNORE_INDEX:
            raise RsSegError(f"{where}: mask value {value} is used by two classes")
        values[value] = i
    return IndexCodec(values, cfg.unknown_colors)


def load_specs(path: Path) -> tuple[list[ClassSpec], list]:
    """A classes.json in either form -> (class specs, nodata values from the file)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RsSegError(f"class table not found: {path} (or set data.classes)") from None
    except (OSError, ValueError) as exc:
        raise RsSegError(f"cannot read class table {path}: {exc}") from None
    try:
        if isinstance(data, dict) and "names" in data:
            return _legacy_specs(data), []
        if isinstance(data, dict) and isinstance(data.get("classes"), list):
            specs = [ClassSpec.model_validate(c) for c in data["classes"]]
            return specs, [v if isinstance(v, int) else parse_color(v) for v in data.get("nodata", [])]
    except (ValidationError, ValueError, TypeError, KeyError) as exc:
        raise RsSegError(f"{path}: malformed class table: {exc}") from None
    raise RsSegError(f"{path}: a class table needs 'names' and 'colors', or a 'classes' list")


def _legacy_specs(data: dict) -> list[ClassSpec]:
    names, colors = data["names"], data.get("colors") or [None] * len(data["names"])
    values = data.get("values") or [None] * len(names)
    ignore = set(data.get("ignore", []))
    if not len(names) == len(colors) == len(values):
        raise ValueError(f"{len(names)} names, {len(colors)} colours and {len(values)} values")
    return [
        ClassSpec(name=n, color=c, value=v, ignore=i in ignore)
        for i, (n, c, v) in enumerate(zip(names, colors, values, strict=True))
    ]
