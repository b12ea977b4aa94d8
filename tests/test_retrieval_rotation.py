"""Histogram retrieval ignores where classes lie (seed 000 §5.2, footnote): a tile rotated by
180 degrees has the same signature and the same EMD ranking, while spatial scores see it as
another tile; on real Dubai tiles a tile's rotated copy is its nearest neighbour by EMD."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from test_retrieval_resume import rewrite_checkpoint

from rsseg.errors import RsSegError
from rsseg.retrieval import build_index, search_index
from rsseg.retrieval.query import Searcher, resolve_method
from rsseg.retrieval.signatures import SignatureSpace

TILE = 64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _write(path: Path, data: np.ndarray) -> Path:
    """(C, H, W) or (H, W) uint8 -> a plain GeoTIFF (no georeferencing)."""
    data = data[None] if data.ndim == 2 else data
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype, transform=rasterio.Affine.identity()) as dst:
        dst.write(np.ascontiguousarray(data))
    return path


def test_rotating_a_tile_by_180_degrees_keeps_signature_and_ranking(tiny_run, tmp_path):
    """Ground-truth index of a scene and of its copy rotated by 180 degrees ("rot"): tile
    (y, x) of the scene is tile (H - t - y, W - t - x) of the copy, rotated."""
    data = Path(tiny_run.run_dir).parent.parent / "data" / "test"
    scene, mask = data / "images" / "scene_000.tif", data / "masks" / "scene_000.tif"
    with rasterio.open(scene) as f, rasterio.open(mask) as g:
        pixels, labels = f.read(), g.read(1)
    rot = _write(tmp_path / "rot.tif", np.rot90(pixels, 2, axes=(1, 2)))
    rot_mask = _write(tmp_path / "rot_mask.tif", np.rot90(labels, 2))
    index = build_index(tiny_run.best_checkpoint, [scene, rot], tile=TILE, out=tmp_path / "idx",
                        masks=[mask, rot_mask], progress=False)
    h, w = labels.shape
    searcher = Searcher(index)
    originals = [r for r, t in enumerate(index.tiles) if t["scene"] == "scene_000"]
    chips = index.chip_masks(originals)
    j = max(range(len(originals)), key=lambda i: (len(np.unique(chips[i])), -i))  # the most varied
    row, chip = originals[j], chips[j]
    y, x = index.tiles[row]["y"], index.tiles[row]["x"]
    twin = index.row_of(f"rot:{h - TILE - y}:{w - TILE - x}")
    rotated = np.rot90(chip, 2)
    assert not np.array_equal(rotated, chip)
    np.testing.assert_array_equal(index.chip_masks([twin])[0], rotated)

    by_id = searcher.query(f"scene_000:{y}:{x}")
    by_twin = searcher.query(index.tiles[twin]["id"])  # the rotated tile, by tile id
    by_mask = searcher.query_mask(rotated, "rotated")  # ... and as a class map
    for q in (by_twin, by_mask):
        np.testing.assert_array_equal(q.cumulative, by_id.cumulative)
    np.testing.assert_allclose(by_mask.hist, by_id.hist, atol=1e-7)

    emd = resolve_method(index, "emd")
    n = index.count
    d_id, r_id = searcher.rank(by_id, emd, n)  # a tile-id query never returns itself
    d_twin, r_twin = searcher.rank(by_twin, emd, n)
    d_mask, r_mask = searcher.rank(by_mask, emd, n)
    assert twin in r_id[d_id == 0] and row in r_twin[d_twin == 0] and {row, twin} <= set(r_mask[d_mask == 0])
    others = {row, twin}
    ranked = [(d[~np.isin(r, list(others))], r[~np.isin(r, list(others))])
              for d, r in ((d_id, r_id), (d_twin, r_twin), (d_mask, r_mask))]
    for d, r in ranked[1:]:  # the same ranking of every other tile, the same distances
        np.testing.assert_array_equal(r, ranked[0][1])
        np.testing.assert_array_equal(d, ranked[0][0])
    res = search_index(index, f"scene_000:{y}:{x}", k=3)
    assert res[0]["distance"] == 0 and index.tiles[twin]["id"] in [r["tile_id"] for r in res if r["distance"] == 0]
    # spatial scores compare pixel by pixel: the rotated tile is no longer a perfect match
    scores, rows = searcher.rank(by_id, resolve_method(index, "miou"), n)
    assert dict(zip(rows.tolist(), scores.tolist(), strict=True))[twin] < 1


def test_mask_query_errors(tiny_run, tmp_path):
    data = Path(tiny_run.run_dir).parent.parent / "data" / "test"
    index = build_index(tiny_run.best_checkpoint, [data / "images" / "scene_000.tif"], tile=TILE,
                        out=tmp_path / "idx", masks=[data / "masks" / "scene_000.tif"], progress=False)
    searcher = Searcher(index)
    with pytest.raises(RsSegError, match=r"values \[9\] are not classes"):
        searcher.query_mask(np.full((4, 4), 9))
    with pytest.raises(RsSegError, match="no pixel of an evaluated class"):
        searcher.query_mask(np.full((4, 4), 255))
    with pytest.raises(RsSegError, match=r"\(H, W\) class map"):
        searcher.query_mask(np.zeros(4))


@pytest.mark.realdata
def test_dubai_tile_rotated_copy_is_its_nearest_neighbour(shared_data, tiny_run, tmp_path):
    """Three parts of Dubai tile 2 with their ground-truth masks (decoded from RGB by the
    dubai source), plus rotated copies of three chips as extra scenes: each chip's nearest
    neighbour by EMD is its own rotated copy (distance 0), and the other way round."""
    from rsseg.config.data import DataConfig
    from rsseg.data.datasets import get_source
    from rsseg.infer import read_image

    source = get_source(DataConfig(dataset="dubai", root=shared_data / "dubai-aerial", cache_dir=tmp_path / "cache"))
    parts = [s for s in source.scenes("train") if s.group == "Tile 2"][:3]
    assert len(parts) == 3
    classes = source.classes()
    ckpt = rewrite_checkpoint(tiny_run.best_checkpoint, tmp_path / "dubai.ckpt", classes=classes)
    tile = 128
    space = SignatureSpace.of(classes)
    scenes, masks, chips = [], [], []
    for part in parts:
        labels = source.read_mask(part)
        scenes.append(part.image)
        masks.append(_write(tmp_path / f"{part.image.stem}_mask.tif", labels))
        for y in range(0, labels.shape[0] - tile + 1, tile):
            for x in range(0, labels.shape[1] - tile + 1, tile):
                chips.append((part, y, x, labels[y : y + tile, x : x + tile]))
    hist, mass = space.signatures(np.stack([c[3] for c in chips]))
    cum = space.cumulative(hist)
    distinct = [i for i in range(len(chips)) if mass[i] >= 0.9 and np.count_nonzero(hist[i]) >= 3
                and (np.abs(cum - cum[i]).sum(axis=1) > 0).sum() == len(chips) - 1]
    picked = [distinct[k] for k in np.linspace(0, len(distinct) - 1, 3).astype(int)]
    assert len(set(picked)) == 3, "expected Dubai chips with a histogram of their own"
    for k, i in enumerate(picked):
        part, y, x, labels = chips[i]
        image = read_image(part.image)[0][:, y : y + tile, x : x + tile]
        scenes.append(_write(tmp_path / f"rot{k}.tif", np.rot90(image, 2, axes=(1, 2))))
        masks.append(_write(tmp_path / f"rot{k}_mask.tif", np.rot90(labels, 2)))
    index = build_index(ckpt, scenes, tile=tile, out=tmp_path / "idx", masks=masks, progress=False)
    assert index.manifest["source"] == "ground-truth" and index.manifest["signature_classes"] == [
        "building", "land", "road", "vegetation", "water"]
    assert index.count >= 12
    searcher = Searcher(index)
    for k, i in enumerate(picked):
        part, y, x, _ = chips[i]
        tid = f"{part.image.stem}:{y}:{x}"
        res = search_index(index, tid, k=2, searcher=searcher)
        assert res[0]["tile_id"] == f"rot{k}:0:0" and res[0]["distance"] == 0 < res[1]["distance"]
        back = search_index(index, f"rot{k}:0:0", k=1, searcher=searcher)
        assert back[0]["tile_id"] == tid and back[0]["distance"] == 0
