"""Class tables: names, display colours and which classes are left out of loss and metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rsseg.errors import RsSegError
from rsseg.io import atomic_write_text

#: Mask value for "no label": never a class, excluded from loss and metrics.
IGNORE_INDEX = 255


@dataclass(frozen=True)
class ClassTable:
    """Ordered classes of a dataset. Index ``i`` in a mask means ``names[i]``.

    ``ignore`` lists class indices that exist in the labels but are excluded from the loss
    and from the metrics (the seed's "background": seed 000 §5.3.2).
    """

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.names) != len(self.colors):
            raise RsSegError(
                f"class table has {len(self.names)} names but {len(self.colors)} colours"
            )
        if not self.names:
            raise RsSegError("class table is empty")
        if len(self.names) >= IGNORE_INDEX:
            raise RsSegError(f"at most {IGNORE_INDEX - 1} classes are supported")
        bad = [i for i in self.ignore if not 0 <= i < len(self.names)]
        if bad:
            raise RsSegError(f"ignored class indices {bad} are outside 0..{len(self.names) - 1}")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def evaluated(self) -> list[int]:
        """Indices of classes that count in the loss and the metrics."""
        return [i for i in range(self.num_classes) if i not in self.ignore]

    def palette(self) -> np.ndarray:
        """(256, 3) uint8 lookup table: class index -> RGB; ignore and unused values black."""
        lut = np.zeros((256, 3), dtype=np.uint8)
        lut[: self.num_classes] = np.asarray(self.colors, dtype=np.uint8)
        return lut

    def colorize(self, mask: np.ndarray) -> np.ndarray:
        """Class-index mask (H, W) -> RGB image (H, W, 3)."""
        return self.palette()[mask.astype(np.uint8)]

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "colors": [list(c) for c in self.colors],
            "ignore": list(self.ignore),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ClassTable:
        try:
            return cls(
                names=tuple(str(n) for n in data["names"]),
                colors=tuple(tuple(int(v) for v in c) for c in data["colors"]),  # type: ignore[misc]
                ignore=tuple(int(i) for i in data.get("ignore", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RsSegError(f"malformed class table: {exc}") from exc

    def save(self, path: Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> ClassTable:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise RsSegError(f"class table not found: {path}") from exc
        except (OSError, json.JSONDecodeError) as exc:
            raise RsSegError(f"cannot read class table {path}: {exc}") from exc
        try:
            return cls.from_dict(data)
        except RsSegError as exc:
            raise RsSegError(f"{path}: {exc}") from exc
