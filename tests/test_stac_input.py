"""STAC Items as prediction inputs: bands by key, name or common name, separate files at
different resolutions stacked onto the finest grid, catalogues, and errors that list the assets."""

import datetime as dt

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.transform import from_origin

from rsseg.errors import RsSegError
from rsseg.gis.stac_input import expand_inputs, is_stac, stac_inputs

BANDS = {"B02": ("blue", 10), "B03": ("green", 10), "B04": ("red", 10), "B11": ("swir16", 20)}


def _band(path, res, value, crs="EPSG:32633"):
    side = 200 // res
    data = (np.arange(side * side, dtype=np.uint16).reshape(side, side) % 50) + value
    with rasterio.open(path, "w", driver="GTiff", height=side, width=side, count=1, dtype="uint16", nodata=0,
                       crs=crs, transform=from_origin(600000, 5600000, res, res)) as dst:
        dst.write(data, 1)
    return data


def _item(folder, item_id="S2_T33", crs11="EPSG:32633", href=None):
    folder.mkdir(parents=True, exist_ok=True)
    item = pystac.Item(item_id, {"type": "Point", "coordinates": [15, 50]}, [15, 50, 15, 50],
                       dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc), {})
    data = {}
    for i, (key, (common, res)) in enumerate(BANDS.items()):
        data[key] = _band(folder / f"{key}.tif", res, 100 * (i + 1), crs11 if key == "B11" else "EPSG:32633")
        item.add_asset(key, pystac.Asset(href if href and key == "B04" else f"./{key}.tif", roles=["data"],
                                         extra_fields={"eo:bands": [{"name": key, "common_name": common}]}))
    item.set_self_href(str(folder / f"{item_id}.json"))
    item.make_asset_hrefs_relative()
    item.save_object(include_self_link=False)
    return folder / f"{item_id}.json", data


def test_bands_by_common_name_are_stacked_on_the_finest_grid(tmp_path):
    path, data = _item(tmp_path / "item")
    assert is_stac(path) and not is_stac(tmp_path / "item" / "B02.tif")
    [vrt] = stac_inputs(path, ["red", "green", "B02", "swir16"], tmp_path / "out")
    assert vrt == tmp_path / "out" / "stac-inputs" / "S2_T33.vrt"
    with rasterio.open(vrt) as src:
        assert (src.count, src.height, src.width, str(src.crs)) == (4, 20, 20, "EPSG:32633")
        assert src.transform == from_origin(600000, 5600000, 10, 10)
        stack = src.read()
        assert src.descriptions[0] == "B04:red"
    np.testing.assert_array_equal(stack[0], data["B04"])
    np.testing.assert_array_equal(stack[1], data["B03"])
    np.testing.assert_array_equal(stack[2], data["B02"])
    coarse = data["B11"].astype(float)  # 10 x 10 at 20 m -> 20 x 20: each 10 m pixel near its 20 m parent
    assert np.abs(stack[3].astype(float) - np.kron(coarse, np.ones((2, 2)))).max() <= 50


def test_a_catalogue_gives_one_input_per_item_and_other_inputs_pass_through(tmp_path):
    catalog = pystac.Catalog("c", "two items")
    for name in ("a", "b"):
        path, _ = _item(tmp_path / name, item_id=name)
        catalog.add_item(pystac.Item.from_file(str(path)))
    catalog.normalize_and_save(str(tmp_path / "cat"), pystac.CatalogType.SELF_CONTAINED)
    plain = tmp_path / "a" / "B02.tif"
    out = expand_inputs([tmp_path / "cat" / "catalog.json", plain], ["red", "green", "blue"], tmp_path / "o")
    assert [p.name for p in out] == ["a.vrt", "b.vrt", "B02.tif"]


@pytest.mark.parametrize("case, needle", [
    ("missing band", "has no band 'nir'"),
    ("no choice", "choose bands with --bands"),
    ("two crs", "different CRSs"),
    ("remote", "remote"),
])
def test_bad_items_are_one_line_naming_the_file(tmp_path, case, needle):
    kwargs = {"two crs": {"crs11": "EPSG:32634"}, "remote": {"href": "https://example.com/B04.tif"}}.get(case, {})
    path, _ = _item(tmp_path / "item", **kwargs)
    bands = {"missing band": ["red", "nir"], "no choice": None}.get(case, ["red", "swir16"])
    with pytest.raises(RsSegError) as err:
        stac_inputs(path, bands, tmp_path / "out")
    message = str(err.value)
    assert needle in message and str(path) in message and "\n" not in message
    if case == "missing band":
        assert "B02 (B02/blue)" in message and "B11 (B11/swir16)" in message  # the assets it has


def test_bands_without_a_stac_input_is_an_error(tmp_path):
    with pytest.raises(RsSegError, match="none of the inputs is a STAC"):
        expand_inputs([tmp_path / "x.tif"], ["red"], tmp_path)


def test_item_ids_become_safe_distinct_file_names(tmp_path):
    from rsseg.gis.stac_input import _safe_name

    seen: set[str] = set()
    names = [_safe_name(i, seen) for i in ("../../etc/x", "a/b", "a_b", "a/b")]
    assert names == ["_.._etc_x", "a_b", "a_b-2", "a_b-3"] and all("/" not in n for n in names)
