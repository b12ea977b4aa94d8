"""Images with vector labels: masks rasterised from polygons onto each image's grid, cached.

``data.images`` (a glob under ROOT) lists the images; ``data.labels`` names the vector file
(relative to ROOT) and how features become classes (``rsseg.data.vector``). Masks are burnt
once per image into ``<cache_dir>/vector-masks`` and rebuilt when the image grid, the vector
file or an option changes. They hold class indices (255 = no label), so the class table is
``data.classes`` (or a classes.json) by position; ``value`` and colour masks do not apply.

Georeferenced images are placed by their CRS and transform. XYZ web-map chips
(``labels.xyz_pattern``, e.g. ``OAM-{x}-{y}-{z}``) are placed by their tile numbers; chips of
several zooms cover the same ground, so a chip's split group is its ancestor tile at
``labels.group_zoom`` (default: the coarsest zoom present), and no ground straddles splits.
``data.group_pattern`` still overrides the group.
"""

from __future__ import annotations

from pathlib import Path

from rsseg.data.codecs import IndexCodec, MaskCodec
from rsseg.data.datasets.base import Scene, relative_id
from rsseg.data.datasets.folder import FolderSource
from rsseg.errors import RsSegError


class VectorSource(FolderSource):
    """``data.images`` + ``data.labels`` (vector file) -> scenes with cached rasterised masks."""

    name = "vector"

    def _labels(self):
        if self.cfg.labels is None:
            raise RsSegError("dataset 'vector' needs data.labels (at least `vector: PATH` of the label file)")
        return self.cfg.labels

    def vector_path(self) -> Path:
        path = Path(self._labels().vector).expanduser()
        return path if path.is_absolute() else self.root / path

    def make_codec(self) -> MaskCodec:
        specs, where, _ = self._specs()
        if self.cfg.mask_encoding != "index":
            raise RsSegError("dataset 'vector' burns class indices: data.mask_encoding must be index")
        valued = [s.name for s in specs if s.value is not None]
        if valued:
            raise RsSegError(f"{where}: classes {valued} set `value`, but vector masks hold class positions")
        return IndexCodec.identity(len(specs), self.cfg.unknown_colors)

    def list_scenes(self) -> list[Scene]:
        from rsseg.data.vector import vector_masks  # lazy: geopandas and shapely only for vector labels
        from rsseg.data.xyz import grid_of, parse_xyz_name  # lazy: only for XYZ web-map chips

        cfg, labels = self.cfg, self._labels()
        if cfg.images is None:
            raise RsSegError("dataset 'vector' needs data.images: a glob of the images under data.root")
        if cfg.masks is not None:
            raise RsSegError("dataset 'vector' rasterises its masks from data.labels: remove data.masks")
        images = sorted(p for p in self.root.glob(cfg.images) if p.is_file())
        if not images:
            raise RsSegError(f"no images matching data.images '{cfg.images}' under {self.root}")
        placed = []
        for image in images:
            try:
                grid_of(image, labels.xyz_pattern)
            except RsSegError as exc:
                self.bad(image, str(exc).removeprefix(f"{image}: "), relative_id(image, self.root))
                continue
            placed.append(image)
        options = labels.model_dump(exclude={"vector", "xyz_pattern", "group_zoom"})
        masks = vector_masks(placed, self.vector_path(), self.cache_dir() / "vector-masks",
                             xyz_pattern=labels.xyz_pattern, classes=self.class_table(), **options)
        tiles = {p: parse_xyz_name(p, labels.xyz_pattern) for p in placed} if labels.xyz_pattern else {}
        zoom = labels.group_zoom if labels.group_zoom is not None else min((t[2] for t in tiles.values()), default=0)
        scenes = []
        for image, mask in zip(placed, masks, strict=True):
            scene = self._scene(image, mask, relative_id(image, self.root))
            if image in tiles and not cfg.group_pattern:
                scene = Scene(image, mask, scene.id, _ancestor(tiles[image], zoom, image))
            scenes.append(scene)
        return scenes


def _ancestor(tile: tuple[int, int, int], zoom: int, image: Path) -> str:
    """``z{zoom}/{x}/{y}``: the tile at ``zoom`` that holds ``tile``."""
    x, y, z = tile
    if z < zoom:
        raise RsSegError(f"{image}: chip of zoom {z} is coarser than labels.group_zoom {zoom}, so its ground "
                         "spans several groups; lower group_zoom")
    shift = z - zoom
    return f"z{zoom}/{x >> shift}/{y >> shift}"
