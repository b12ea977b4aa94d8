"""`dataset: vector`: images + vector labels rasterised into cached masks; XYZ chips grouped by ancestor tile."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

for _module in ("pyogrio", "shapely", "pyproj"):  # optional: vector labels need them
    pytest.importorskip(_module)

from fakedata import vector

from rsseg.config.data import DataConfig
from rsseg.data.datasets import get_source
from rsseg.data.xyz import parse_xyz_name
from rsseg.errors import RsSegError

CLASSES = [{"name": n} for n in vector.CLASSES]
XYZ = "OAM-{x}-{y}-{z}"


def source(tmp_path, root, **extra):
    cfg = DataConfig(**{"dataset": "vector", "root": root, "cache_dir": tmp_path / "cache", "tile_size": 16,
                        **extra})
    src = get_source(cfg)
    src.prepare(progress=False)
    return src


def counts(mask: np.ndarray) -> dict[int, int]:
    return {int(k): int(v) for k, v in zip(*np.unique(mask, return_counts=True), strict=True)}


def test_georeferenced_images_get_exact_cached_masks(tmp_path):
    root = vector.make(tmp_path / "v")
    labels = {"vector": "labels.gpkg", "attribute": "kind", "mapping": vector.MAPPING}
    src = source(tmp_path, root, images="img/*.tif", labels=labels, classes=CLASSES)
    scenes = src.all_scenes()
    assert [s.id for s in scenes] == ["img/a", "img/b", "img/c"] and [s.group for s in scenes] == ["img/a", "img/b", "img/c"]
    for scene in scenes:
        assert scene.mask.is_relative_to(src.cache_dir() / "vector-masks")
        assert counts(src.read_mask(scene)) == vector.EXPECTED[scene.id.removeprefix("img/")]
    stamps = [s.mask.stat().st_mtime_ns for s in scenes]
    again = source(tmp_path, root, images="img/*.tif", labels=labels, classes=CLASSES).all_scenes()
    assert [s.mask.stat().st_mtime_ns for s in again] == stamps  # cached, not burnt again
    ds = src.tile_dataset(scenes)
    assert ds.class_counts.tolist() == [sum(e.get(c, 0) for e in vector.EXPECTED.values()) for c in range(3)]
    images, masks = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert images.shape == (4, 3, 16, 16) and set(masks.unique().tolist()) <= {0, 1, 2, 255}


def test_xyz_chips_are_grouped_by_their_z19_tile_so_splits_never_share_ground(tmp_path):
    root = vector.make_xyz(tmp_path / "x")
    labels = {"vector": "labels.geojson", "xyz_pattern": XYZ}
    classes = [{"name": "background"}, {"name": "building"}]
    src = source(tmp_path, root, images="chips/*.png", labels=labels, classes=classes)
    scenes = src.all_scenes()
    assert len(scenes) == 15 and {s.group for s in scenes} == {f"z19/{x}/{y}" for x, y in vector.ZOOM19}
    for scene in scenes:
        x, _, z = parse_xyz_name(scene.image, XYZ)
        mask = src.read_mask(scene)
        if z == 19:  # the western half of every z19 chip is building
            assert (mask[:, :16] == 1).all() and (mask[:, 16:] == 0).all()
        else:  # z20 children: western ones all building, eastern ones none
            assert (mask == (1 - x % 2)).all()
    splits = src.splits()
    owners = {}
    for name, members in splits.items():
        for scene in members:
            assert owners.setdefault(scene.group, name) == name
    assert sorted(len(v) for v in splits.values()) == [5, 5, 5]
    coarse = source(tmp_path, root, images="chips/*.png", labels={**labels, "group_zoom": 18}, classes=classes)
    assert len({s.group for s in coarse.all_scenes()}) < 3
    with pytest.raises(RsSegError, match="coarser than labels.group_zoom 20"):
        source(tmp_path, root, images="chips/*.png", labels={**labels, "group_zoom": 20}, classes=classes).all_scenes()


def test_config_errors_name_the_problem(tmp_path):
    root = vector.make(tmp_path / "v")
    labels = {"vector": "labels.gpkg", "attribute": "kind", "mapping": vector.MAPPING}
    with pytest.raises(RsSegError, match="needs data.labels"):
        source(tmp_path, root, images="img/*.tif", classes=CLASSES).all_scenes()
    with pytest.raises(RsSegError, match="needs data.images"):
        source(tmp_path, root, labels=labels, classes=CLASSES).all_scenes()
    with pytest.raises(RsSegError, match="remove data.masks"):
        source(tmp_path, root, images="img/*.tif", masks="img/*.tif", labels=labels, classes=CLASSES).all_scenes()
    with pytest.raises(RsSegError, match="hold class positions"):
        valued = [{"name": "background", "value": 7}, *CLASSES[1:]]
        source(tmp_path, root, images="img/*.tif", labels=labels, classes=valued).codec  # noqa: B018
    with pytest.raises(RsSegError, match=r"'kind' has values with no class: 'shed'"):
        source(tmp_path, root, images="img/*.tif", labels={**labels, "mapping": {"house": 1, "pond": 2}},
               classes=CLASSES).all_scenes()
    with pytest.raises(ValidationError, match="for `dataset: vector`"):
        DataConfig(dataset="folder", labels=labels)


@pytest.mark.realdata
def test_kampala_buildings_as_a_dataset(shared_data, tmp_path):
    src = source(tmp_path, shared_data / "kampala-buildings", images="chips/*.png", bands=[1, 2, 3],
                 labels={"vector": "labels.geojson", "xyz_pattern": XYZ}, tile_size=128,
                 classes=[{"name": "background"}, {"name": "building"}])
    scenes = src.all_scenes()
    assert len(scenes) == 147 and all(s.mask.exists() for s in scenes)
    assert len({s.group for s in scenes}) == 7  # 7 z19 tiles, each with its 4 z20 and 16 z21 chips
    groups = {name: {s.group for s in members} for name, members in src.splits().items()}
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])
    ds = src.tile_dataset(src.scenes("val"))  # 21 chips of one z19 tile (RGB and RGBA: bands 1-3)
    images, masks = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert images.shape == (4, 3, 128, 128) and set(masks.unique().tolist()) <= {0, 1}
    assert 0.1 < ds.class_counts[1] / ds.class_counts.sum() < 0.6  # buildings: ~29 % over all chips
