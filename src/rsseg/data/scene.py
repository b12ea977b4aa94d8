"""``Scene``: one image and its mask. Its own module so that the index, splits and tiles,
which the dataset sources build on, need not import the sources."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Scene:
    """One image and its (optional) mask on the same pixel grid.

    ``id`` is unique and stable within a dataset (exclusion lists and split lists name it);
    ``group`` is the unit of splitting (scenes of one group never straddle splits).
    """

    image: Path
    mask: Path | None
    id: str = ""
    group: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", Path(self.image).stem)
        if not self.group:
            object.__setattr__(self, "group", self.id)
