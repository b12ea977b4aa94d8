"""Dataset loaders on fake data in each dataset's real on-disk layout (tests/fakedata)."""

from __future__ import annotations

import numpy as np
import pytest
from fakedata import (
    deepglobe,
    dubai,
    flair1,
    folder,
    gid15,
    landcoverai,
    loveda,
    multispectral,
    potsdam,
    vaihingen,
)
from PIL import Image

from rsseg.classes import IGNORE_INDEX
from rsseg.config.data import DATASET_NAMES, DataConfig
from rsseg.data.datasets import DATASETS, get_source
from rsseg.data.rasters import open_raster
from rsseg.errors import RsSegError


def make_source(name, root, tmp_path, **extra):
    src = get_source(DataConfig(dataset=name, root=root, cache_dir=tmp_path / "cache", **extra))
    src.prepare(progress=False)
    return src


def counts(src):
    return {k: len(v) for k, v in src.splits().items()}


def rgb_of(path):
    return np.asarray(Image.open(path).convert("RGB"))


def decode_by_hand(rgb, colors, extra=None):
    """Independent oracle: a Python loop over the known colours."""
    out = np.full(rgb.shape[:2], 254, dtype=np.uint8)
    for i, c in enumerate(colors):
        out[(rgb == c).all(-1)] = i
    for c, v in (extra or {}).items():
        out[(rgb == c).all(-1)] = v
    return out


def test_registry_lists_every_dataset():
    assert set(DATASETS) == {n.strip() for n in DATASET_NAMES.split(",")}
    with pytest.raises(RsSegError, match="unknown dataset 'nope'; available: deepglobe"):
        get_source(DataConfig(dataset="nope"))


def test_dubai_classes_split_by_tile_and_exact_colours(tmp_path):
    src = make_source("dubai", dubai.make(tmp_path / "d"), tmp_path)
    table = src.classes()
    assert table.names == ("building", "land", "road", "vegetation", "water", "unlabeled")
    assert table.ignore == (5,)
    assert counts(src) == {"train": 10, "val": 2, "test": 2}
    assert {s.group for s in src.scenes("val")} == {"Tile 6"}
    assert src.scenes("test")[0].id == "Tile 7/image_part_001"
    for scene in src.all_scenes():
        expected = decode_by_hand(rgb_of(scene.mask), dubai.COLORS, {(0, 0, 0): IGNORE_INDEX})
        assert (expected != 254).all()
        np.testing.assert_array_equal(src.read_mask(scene), expected)
    border = next(s for s in src.all_scenes() if s.id == "Tile 3/image_part_001")
    assert (src.read_mask(border)[0] == IGNORE_INDEX).all()


def test_dubai_palette_masks_decode_through_their_colour_map(tmp_path):
    src = make_source("dubai", dubai.make(tmp_path / "d"), tmp_path)
    scene = next(s for s in src.all_scenes() if s.group == "Tile 2")
    assert Image.open(scene.mask).mode == "P"
    mask = src.read_mask(scene)
    np.testing.assert_array_equal(mask, decode_by_hand(rgb_of(scene.mask), dubai.COLORS))
    assert set(np.unique(mask)) == set(range(6))


def test_unknown_colour_error_lists_colours_and_pixel_counts(tmp_path):
    root = dubai.make(tmp_path / "d")
    path = root / "Tile 1" / "masks" / "image_part_002.png"
    rgb = rgb_of(path).copy()
    rgb[:3, :5] = (1, 2, 3)
    rgb[5, :7] = (250, 0, 0)
    Image.fromarray(rgb).save(path)
    src = make_source("dubai", root, tmp_path)
    scene = next(s for s in src.all_scenes() if s.mask == path)
    with pytest.raises(RsSegError) as err:
        src.tile_dataset([scene])
    text = str(err.value)
    assert str(path) in text and "2 mask colour(s) not in the class table" in text
    assert "(1, 2, 3) #010203 x 15 px" in text and "(250, 0, 0) #FA0000 x 7 px" in text
    assert "data.unknown_colors: ignore" in text
    with pytest.raises(RsSegError, match="#010203 x 15 px"):
        src.read_mask(scene)
    lenient = make_source("dubai", root, tmp_path, unknown_colors="ignore")
    mask = lenient.read_mask(scene)
    assert (mask[:3, :5] == IGNORE_INDEX).all() and (mask[5, :7] == IGNORE_INDEX).all()


def test_loveda_official_layout(tmp_path):
    src = make_source("loveda", loveda.make(tmp_path / "l"), tmp_path)
    assert src.classes().names[0] == "background" and src.classes().num_classes == 7
    # Train -> train + carved val; the labelled official Val -> test; Test has no masks
    assert counts(src) == {"train": 3, "val": 1, "test": 2}
    assert all(s.id.startswith("Val/") for s in src.scenes("test"))
    scene = src.scenes("train")[0]
    raw = np.asarray(Image.open(scene.mask))
    expected = np.where(raw == 0, IGNORE_INDEX, raw.astype(np.int16) - 1).astype(np.uint8)
    np.testing.assert_array_equal(src.read_mask(scene), expected)


def test_gid15_layout_colours_and_ratio_split(tmp_path):
    src = make_source("gid15", gid15.make(tmp_path / "g"), tmp_path)
    table = src.classes()
    assert table.num_classes == 16 and table.names[0] == "background" and table.ignore == (0,)
    assert counts(src) == {"train": 3, "val": 1, "test": 1}
    scene = src.all_scenes()[0]
    np.testing.assert_array_equal(src.read_mask(scene), decode_by_hand(rgb_of_tif(scene.mask), gid15.COLORS))
    again = make_source("gid15", tmp_path / "g", tmp_path)
    assert again.splits() == src.splits()  # seeded: same split every time
    other = make_source("gid15", tmp_path / "g", tmp_path, split={"ratios": [0.6, 0.2, 0.2], "seed": 5})
    assert counts(other) == {"train": 3, "val": 1, "test": 1}


def rgb_of_tif(path):
    with open_raster(path) as src:
        return np.moveaxis(src.read(), 0, -1)


def test_landcoverai_chips_with_official_lists_or_scenes(tmp_path):
    root = landcoverai.make(tmp_path / "lc")
    src = make_source("landcoverai", root, tmp_path)
    assert src.classes().names == ("background", "building", "woodland", "water", "road")
    assert counts(src) == {"train": 12, "val": 3, "test": 3}
    val = (root / "val.txt").read_text().split()
    assert [s.id for s in src.scenes("val")] == sorted(val)
    chip = src.scenes("train")[0]
    np.testing.assert_array_equal(src.read_mask(chip), np.asarray(Image.open(chip.mask))[..., 0])
    scenes = make_source("landcoverai", root, tmp_path, variant="scenes")
    assert counts(scenes) == {"train": 1, "val": 1, "test": 1}
    assert scenes.all_scenes()[0].image.parent.name == "images"


def test_deepglobe_binarises_noisy_colours_and_skips_unlabelled(tmp_path):
    src = make_source("deepglobe", deepglobe.make(tmp_path / "dg"), tmp_path)
    table = src.classes()
    assert table.num_classes == 7 and table.names[-1] == "unknown" and table.ignore == (6,)
    assert len(src.all_scenes()) == 5  # valid/999 has no mask
    scene = src.all_scenes()[0]
    rgb = np.where(rgb_of(scene.mask) >= 128, 255, 0)
    np.testing.assert_array_equal(src.read_mask(scene), decode_by_hand(rgb, deepglobe.COLORS))


def test_flair1_domains_test_folder_and_variants(tmp_path):
    root = flair1.make(tmp_path / "f")
    src = make_source("flair1", root, tmp_path)
    assert src.classes().num_classes == 13 and src.classes().names[-1] == "other"
    assert counts(src) == {"train": 8, "val": 2, "test": 2}
    assert {s.group for s in src.scenes("test")} == {"D012_2019"}
    train_groups = {s.group for s in src.scenes("train")}
    assert not train_groups & {s.group for s in src.scenes("val")}
    scene = src.all_scenes()[0]
    raw = np.asarray(Image.open(scene.mask))
    np.testing.assert_array_equal(src.read_mask(scene), np.minimum(raw, 13) - 1)
    full = make_source("flair1", root, tmp_path, variant="full")
    assert full.classes().num_classes == 19
    np.testing.assert_array_equal(full.read_mask(scene), raw - 1)
    assert src.band_indices() is None
    named = make_source("flair1", root, tmp_path, bands=["nir", "red", "green"])
    assert named.band_indices() == [4, 1, 2]


@pytest.mark.parametrize("make", [potsdam.make, potsdam.make_mmseg], ids=["official", "mmseg"])
def test_potsdam_layouts(tmp_path, make):
    src = make_source("potsdam", make(tmp_path / "p"), tmp_path)
    assert src.classes().names[:2] == ("impervious surfaces", "building")
    splits = src.splits()
    assert {s.group for s in splits["test"]} == {"2_13", "7_13"}
    assert not {s.group for s in splits["train"]} & {s.group for s in splits["val"]}
    scene = splits["train"][0]
    if make is potsdam.make:
        mask = src.read_mask(scene)
        np.testing.assert_array_equal(
            mask, decode_by_hand(rgb_of_tif(scene.mask), potsdam.COLORS, {(0, 0, 0): IGNORE_INDEX})
        )
        assert (mask[:, 20] == IGNORE_INDEX).all()
    else:
        raw = np.asarray(Image.open(scene.mask)).astype(np.int16)
        np.testing.assert_array_equal(src.read_mask(scene), np.where(raw == 0, 255, raw - 1))
        assert scene.group == scene.id.split("/")[1].rsplit("_", 4)[0]


def test_vaihingen_eroded_labels_and_benchmark_split(tmp_path):
    src = make_source("vaihingen", vaihingen.make(tmp_path / "v"), tmp_path)
    assert counts(src) == {"train": 3, "val": 1, "test": 2}
    assert [s.id for s in src.scenes("test")] == ["area2", "area4"]
    assert src.band_names() == ["nir", "red", "green"]
    assert all(s.mask.stem.endswith("_noBoundary") for s in src.all_scenes())


def test_multispectral_float_masks_and_band_names(tmp_path):
    classes = [{"name": f"class {v}", "value": v} for v in range(1, 6)]
    cfg = {"images": "img_train/*.tif", "masks": "training_masks/*.tif", "classes": classes}
    src = make_source("multispectral", multispectral.make(tmp_path / "m"), tmp_path, **cfg,
                      bands=["B04", "b03", 1], split={"train": ["*2021*", "*2022*"], "test": ["*2023*"]})
    assert src.band_names() == multispectral.BANDS
    assert src.band_indices() == [3, 2, 1]
    assert counts(src) == {"train": 4, "val": 0, "test": 1}
    scene = src.all_scenes()[0]
    raw = rgb_of_tif(scene.mask)[..., 0]
    np.testing.assert_array_equal(src.read_mask(scene), np.where(raw == 0, 255, raw - 1))
    with pytest.raises(RsSegError, match="no band named 'B99'; bands: B02, B03"):
        make_source("multispectral", tmp_path / "m", tmp_path, **cfg, bands=["B99"]).band_indices()
    with pytest.raises(RsSegError, match="split 'val' .* has no scenes"):
        src.scenes("val")


def test_folder_split_layout_and_glob_layout_with_colour_classes_json(tmp_path):
    src = make_source("folder", folder.make(tmp_path / "f"), tmp_path)
    assert src.classes().names == tuple(folder.NAMES)
    assert counts(src) == {"train": 3, "val": 1, "test": 1}
    assert src.scenes("val")[0].id == "val/s10"
    cfg = {"images": "pairs/*_img.png", "masks": "pairs/*_lbl.png", "image_suffix": "_img",
           "mask_suffix": "_lbl", "mask_encoding": "color", "group_pattern": r"area(\d)"}
    rgb = make_source("folder", folder.make_rgb(tmp_path / "r"), tmp_path, **cfg)
    scene = rgb.all_scenes()[0]
    assert (scene.id, scene.group) == ("pairs/area0_img", "0")
    np.testing.assert_array_equal(
        rgb.read_mask(scene), decode_by_hand(rgb_of(scene.mask), folder.COLORS, {(0, 0, 0): IGNORE_INDEX})
    )


def test_classes_in_yaml_and_fixed_tables(tmp_path):
    root = folder.make(tmp_path / "f")
    specs = [{"name": "a", "value": 2}, {"name": "b", "value": 0, "color": "#00ff00"}, {"name": "c", "value": 1}]
    src = make_source("folder", root, tmp_path, classes=specs)
    assert src.classes().names == ("a", "b", "c") and src.classes().colors[1] == (0, 255, 0)
    scene = src.all_scenes()[0]
    raw = rgb_of_tif(scene.mask)[..., 0]
    np.testing.assert_array_equal(src.read_mask(scene), np.choose(np.minimum(raw, 3), [1, 2, 0, 255]))
    with pytest.raises(RsSegError, match="dubai has a fixed class table"):
        make_source("dubai", dubai.make(tmp_path / "d"), tmp_path, classes=specs)
    with pytest.raises(RsSegError, match="mask value 1 is used by two classes"):
        _ = make_source("folder", root, tmp_path, classes=[{"name": "x", "value": 1}, {"name": "y", "value": 1}]).codec


def test_learn_classes_trains_a_default_ignored_class_but_metrics_leave_it_out(tmp_path):
    """Seed 000 §5.3.2 'learned background': Dubai's 'unlabeled' becomes a trained class."""
    from rsseg.data.datasets.tables import metric_classes

    root = dubai.make(tmp_path / "d")
    learned = make_source("dubai", root, tmp_path, learn_classes=["unlabeled"])
    assert learned.classes().ignore == ()
    chip_masks = [m for _, m in learned.tile_dataset(learned.scenes("train"), train=False)]
    assert any((m == 5).any() for m in chip_masks), "unlabeled pixels should reach the loss as class 5"
    assert metric_classes(learned.classes(), learned.cfg).ignore == (5,)
    with pytest.raises(RsSegError, match="learn_classes: unknown class 'sky'"):
        make_source("dubai", root, tmp_path, learn_classes=["sky"]).classes()
