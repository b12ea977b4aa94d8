"""Dataset sources: where the scenes of each split are and what their classes mean.

A source knows a dataset's on-disk layout; tiling and loading are shared (``tiles.py``).
Register new layouts in ``DATASETS`` (the real-dataset loaders plug in here).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rsseg.classes import ClassTable
from rsseg.config import DataConfig
from rsseg.errors import RsSegError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Scene:
    """One image and its (optional) mask; masks share the image's pixel grid."""

    image: Path
    mask: Path | None


class FolderSource:
    """``root/<split>/<image_dir>/<image_glob>`` with masks of the same stem in ``<mask_dir>``.

    The class table is ``root/classes.json`` (names, colours).
    """

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg

    def prepare(self, progress: bool = True) -> None:
        """Make the data available (nothing to do for a folder on disk)."""
        if not Path(self.cfg.root).is_dir():
            raise RsSegError(f"data.root does not exist or is not a folder: {self.cfg.root}")

    def classes(self) -> ClassTable:
        table = ClassTable.load(Path(self.cfg.root) / "classes.json")
        return with_ignored(table, self.cfg.ignore_classes)

    def scenes(self, split: str) -> list[Scene]:
        if split not in SPLITS:
            raise RsSegError(f"unknown split '{split}'; choose one of {', '.join(SPLITS)}")
        image_dir = Path(self.cfg.root) / split / self.cfg.image_dir
        mask_dir = Path(self.cfg.root) / split / self.cfg.mask_dir
        images = sorted(image_dir.glob(self.cfg.image_glob))
        if not images:
            raise RsSegError(f"no images matching '{self.cfg.image_glob}' in {image_dir}")
        masks = {p.stem: p for p in mask_dir.glob("*") if p.is_file()} if mask_dir.is_dir() else {}
        scenes = []
        for image in images:
            mask = masks.get(image.stem)
            if mask is None:
                raise RsSegError(f"no mask for {image} in {mask_dir} (expected {image.stem}.*)")
            scenes.append(Scene(image, mask))
        return scenes


class SyntheticSource(FolderSource):
    """The built-in synthetic land-cover scenes, generated on first use into ``root``."""

    def prepare(self, progress: bool = True) -> None:
        from rsseg.data.synthetic import generate_dataset

        s = self.cfg.synthetic
        generate_dataset(
            Path(self.cfg.root),
            splits={"train": s.train, "val": s.val, "test": s.test},
            size=s.size,
            seed=s.seed,
            progress=progress,
        )


DATASETS: dict[str, Callable[[DataConfig], FolderSource]] = {
    "folder": FolderSource,
    "synthetic": SyntheticSource,
}


def get_source(cfg: DataConfig) -> FolderSource:
    try:
        return DATASETS[cfg.dataset](cfg)
    except KeyError:
        raise RsSegError(
            f"unknown dataset '{cfg.dataset}'; available: {', '.join(sorted(DATASETS))}"
        ) from None


def with_ignored(table: ClassTable, ignore: list[str | int]) -> ClassTable:
    """Resolve ``ignore_classes`` (names or indices) onto the table."""
    indices = set(table.ignore)
    for item in ignore:
        if isinstance(item, int):
            if not 0 <= item < table.num_classes:
                raise RsSegError(f"ignore_classes: index {item} outside 0..{table.num_classes - 1}")
            indices.add(item)
        elif item in table.names:
            indices.add(table.names.index(item))
        else:
            raise RsSegError(f"ignore_classes: unknown class '{item}'; classes: {', '.join(table.names)}")
    return dataclasses.replace(table, ignore=tuple(sorted(indices)))
