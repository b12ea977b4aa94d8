"""Mask codecs, scene-level splits and the data config, unit by unit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rsseg.classes import IGNORE_INDEX
from rsseg.config import load_config
from rsseg.config.data import DataConfig, SplitConfig, parse_color
from rsseg.data.codecs import UNKNOWN, ColorCodec, IndexCodec
from rsseg.data.datasets import Scene
from rsseg.data.rasters import RasterInfo
from rsseg.data.splits import assign_groups, split_scenes
from rsseg.errors import RsSegError

P = Path("m.tif")


def info(count=1, nodata=None, colormap=None):
    return RasterInfo(4, 4, count, "uint8", "GTiff", nodata, colormap, ())


def decode(codec, data, **kw):
    out, unknown = codec.decode(np.asarray(data), info(count=np.asarray(data).shape[0], **kw), P)
    return codec.finish(out, unknown, P)


def test_index_codec_values_dtypes_nodata_and_nan():
    codec = IndexCodec({0: IGNORE_INDEX, 1000: 0, -3: 1})
    np.testing.assert_array_equal(decode(codec, np.array([[[0, 1000, -3, 255]]], dtype=np.int16)), [[255, 0, 1, 255]])
    floats = np.array([[[1000.0, np.nan, -3.0]]], dtype=np.float32)
    np.testing.assert_array_equal(decode(codec, floats), [[0, 255, 1]])
    with pytest.raises(RsSegError, match="non-integer values .*0.5"):
        decode(codec, np.array([[[0.5, 1000]]], dtype=np.float32))
    shifted = IndexCodec.shifted(3)
    np.testing.assert_array_equal(decode(shifted, np.array([[[0, 1, 3, 255]]], dtype=np.uint8)), [[255, 0, 2, 255]])
    with pytest.raises(RsSegError, match=r"1 mask value\(s\) not in the class table: 7 x 1 px"):
        decode(shifted, np.array([[[0, 1, 3, 7]]], dtype=np.uint8))
    np.testing.assert_array_equal(decode(shifted, np.array([[[9, 1]]], dtype=np.uint8), nodata=9), [[255, 0]])
    lenient = IndexCodec.shifted(3, unknown="ignore")
    np.testing.assert_array_equal(decode(lenient, np.array([[[7, 2]]], dtype=np.uint16)), [[255, 1]])


def test_index_codec_accepts_grey_rgb_but_not_colour_masks():
    codec = IndexCodec.identity(3)
    grey = np.repeat(np.array([[[0, 1, 2]]], dtype=np.uint8), 3, axis=0)
    np.testing.assert_array_equal(decode(codec, grey), [[0, 1, 2]])
    grey[1, 0, 0] = 5
    with pytest.raises(RsSegError, match="set data.mask_encoding: color"):
        decode(codec, grey)


def test_color_codec_rgb_grey_rgba_palette_and_threshold():
    codec = ColorCodec({(10, 20, 30): 0, (0, 0, 0): IGNORE_INDEX, (200, 200, 200): 1})
    rgb = np.array([[[10, 0, 200]], [[20, 0, 200]], [[30, 0, 200]]], dtype=np.uint8)
    np.testing.assert_array_equal(decode(codec, rgb), [[0, 255, 1]])
    rgba = np.concatenate([rgb, np.full((1, 1, 3), 255, np.uint8)])
    np.testing.assert_array_equal(decode(codec, rgba), [[0, 255, 1]])
    np.testing.assert_array_equal(decode(codec, np.array([[[200, 0]]], dtype=np.uint8)), [[1, 255]])
    palette = {0: (10, 20, 30, 255), 1: (200, 200, 200, 255), 2: (1, 1, 1, 255)}  # entry 2 unused: fine
    np.testing.assert_array_equal(decode(codec, np.array([[[1, 0, 0]]], dtype=np.uint8), colormap=palette), [[1, 0, 0]])
    with pytest.raises(RsSegError, match=r"\(1, 1, 1\) #010101 x 2 px"):
        decode(codec, np.array([[[2, 2, 0]]], dtype=np.uint8), colormap=palette)
    binarised = ColorCodec({(0, 255, 255): 0}, threshold=128)
    np.testing.assert_array_equal(decode(binarised, np.array([[[3]], [[250]], [[130]]], dtype=np.uint8)), [[0]])
    assert codec.key() != ColorCodec(codec.colors, unknown="ignore").key()
    out, unknown = codec.decode(np.full((3, 1, 2), 7, np.uint8), info(3), P)
    assert (out == UNKNOWN).all() and unknown == {0x070707: 2}


def scenes(groups):
    return [Scene(Path(f"{g}/{k}.tif"), None, f"{g}/{k}", g) for g in groups for k in range(2)]


def test_ratio_split_is_by_group_seeded_and_covers_every_split():
    all_scenes = scenes([f"Tile {i}" for i in range(1, 8)])
    a = split_scenes(all_scenes, SplitConfig(ratios=(0.7, 0.15, 0.15), seed=1))
    b = split_scenes(all_scenes, SplitConfig(ratios=(0.7, 0.15, 0.15), seed=1))
    assert a == b and [len(a[k]) for k in ("train", "val", "test")] == [10, 2, 2]
    for name in ("val", "test"):  # whole groups only
        assert not {s.group for s in a["train"]} & {s.group for s in a[name]}
    c = split_scenes(all_scenes, SplitConfig(ratios=(0.7, 0.15, 0.15), seed=2))
    assert c != a
    assert sorted(assign_groups(["a", "b", "c"], (0.9, 0.05, 0.05), 0).values()) == ["test", "train", "val"]
    assert list(assign_groups(["a"], (0.7, 0.15, 0.15), 0).values()) == ["train"]


def test_list_split_by_group_names_and_globs():
    all_scenes = scenes([f"Tile {i}" for i in range(1, 8)])
    cfg = SplitConfig(train=["Tile [1-5]"], val=["Tile 6"], test=["Tile 7/*"])
    out = split_scenes(all_scenes, cfg)
    assert [len(out[k]) for k in ("train", "val", "test")] == [10, 2, 2]
    assert {s.group for s in out["test"]} == {"Tile 7"}
    with pytest.raises(RsSegError, match="data.split.val: 'Tile 9' matches no scene id or group"):
        split_scenes(all_scenes, SplitConfig(train=["Tile 1"], val=["Tile 9"]))
    with pytest.raises(RsSegError, match="scene 'Tile 1/0' .* is in train and test"):
        split_scenes(all_scenes, SplitConfig(train=["Tile 1"], test=["Tile 1/0"]))
    partial = split_scenes(all_scenes, SplitConfig(train=["Tile 1"], test=["Tile 2"]))
    assert [len(partial[k]) for k in ("train", "val", "test")] == [2, 0, 2]


def test_official_split_with_train_only_pool_carves_validation():
    all_scenes = scenes([f"g{i}" for i in range(10)])
    out = split_scenes(all_scenes, None, lambda s: "test" if s.group in ("g0", "g1") else "trainval")
    # 8 training groups: round(8 * 0.15 / 0.85) = 1 carved for validation
    assert [len(out[k]) for k in ("train", "val", "test")] == [14, 2, 4]
    dropped = split_scenes(all_scenes, None, lambda s: None if s.group == "g0" else "train")
    assert len(dropped["train"]) == 18


def test_config_fields_parse_and_validate(tmp_path, monkeypatch):
    assert parse_color("#3C1098") == (60, 16, 152) == parse_color([60, 16, 152])
    with pytest.raises(ValueError):
        parse_color("#12345")
    cfg = DataConfig(nodata_values=[0, "#000000", [1, 2, 3]], bands=["B04", 3],
                     classes=[{"name": "x", "color": "#ff0000"}])
    assert cfg.nodata_values == [0, (0, 0, 0), (1, 2, 3)] and cfg.classes[0].color == (255, 0, 0)
    monkeypatch.chdir(tmp_path)
    cfg = DataConfig(exclude="bad.json", cache_dir="c")
    assert cfg.exclude == tmp_path / "bad.json" and cfg.cache_dir == tmp_path / "c"
    for bad, text in [
        ({"bands": [0]}, "1-based"),
        ({"split": {"train": ["a"], "ratios": [1, 0, 0]}}, "either scene lists"),
        ({"split": {"ratios": [-1, 1, 1]}}, ">= 0"),
        ({"unknown_colors": "maybe"}, "unknown_colors"),
        ({"group_pattern": "(unclosed"}, "regular expression"),
    ]:
        path = tmp_path / "c.yaml"
        import yaml

        path.write_text(yaml.safe_dump({"data": bad}))
        with pytest.raises(RsSegError, match=text):
            load_config(path)
