"""Retrieval end to end on the tiny run: index build and round trip, search by tile id and
by image, a known near-duplicate found first, the Table-3 comparison, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from rsseg.errors import RsSegError
from rsseg.retrieval import (
    RetrievalIndex,
    ViTSpec,
    build_index,
    compare_methods,
    search_index,
)
from rsseg.retrieval.query import Searcher, output_paths

TILE = 64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _scene(run, split: str = "test") -> tuple[Path, Path]:
    root = Path(run.run_dir).parent.parent / "data" / split
    return root / "images" / "scene_000.tif", root / "masks" / "scene_000.tif"


def _crop(src: Path, dst: Path, size: int = TILE) -> Path:
    with rasterio.open(src) as f:
        profile = f.profile | {"width": size, "height": size}
        data = f.read(window=((0, size), (0, size)))
    with rasterio.open(dst, "w", **profile) as g:
        g.write(data)
    return dst


@pytest.fixture(scope="module")
def vit_weights(tmp_path_factory) -> Path:
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=1)
    path = tmp_path_factory.mktemp("vit") / "vit.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def built(tiny_run, vit_weights, tmp_path_factory):
    """Index of the test and val scenes plus a one-chip crop, with backbone and ViT embeddings."""
    base = tmp_path_factory.mktemp("retrieval")
    crop = _crop(_scene(tiny_run)[0], base / "crop.tif")
    scenes = [_scene(tiny_run, "test")[0], _scene(tiny_run, "val")[0], crop]
    vit = ViTSpec("vit_tiny_patch16_224", vit_weights, "cls", {"depth": 1})
    index = build_index(tiny_run.best_checkpoint, scenes, tile=TILE, out=base / "index",
                        embeddings=["backbone", vit], progress=False)
    return index, crop, base


def test_index_round_trip(built):
    index, _, base = built
    assert index.count == 19  # two 192 px scenes in 9 chips each, plus the crop
    again = RetrievalIndex(base / "index")
    np.testing.assert_array_equal(again.signatures, index.signatures)
    np.testing.assert_array_equal(again.cumulative, index.cumulative)
    m = again.manifest
    assert m["format"] == "rsseg-retrieval-index" and m["version"] == 1 and m["tile"] == TILE
    assert m["class_order"] == m["signature_classes"] and m["source"] == "prediction"
    assert set(m["embeddings"]) == {"backbone", "vit-vit_tiny_patch16_224"}
    assert again.embeddings("backbone").shape == (19, 16)
    assert again.embeddings("vit-vit_tiny_patch16_224").shape == (19, 192)
    np.testing.assert_allclose(again.signatures.sum(axis=1), 1, atol=1e-6)
    assert (again.cumulative[:, -1] == 1).all()
    ids = [t["id"] for t in again.tiles]
    assert ids[0] == "crop:0:0" and "test-images-scene_000:64:128" in ids
    tile = again.tiles[again.row_of("test-images-scene_000:64:128")]
    with rasterio.open(_scene_path(again, tile["scene"])) as f:
        expected = rasterio.windows.bounds(rasterio.windows.Window(128, 64, TILE, TILE), f.transform)
    assert tile["bounds"] == pytest.approx(list(expected))
    assert again.scenes[tile["scene"]]["crs"]
    assert again.chip_masks([0]).shape == (1, TILE, TILE)


def _scene_path(index: RetrievalIndex, scene: str) -> str:
    return index.scenes[scene]["path"]


def test_search_by_tile_id_and_by_image(built):
    index, crop, base = built
    searcher = Searcher(index)
    res = search_index(index, "val-images-scene_000:0:0", k=5, by="emd", out=base / "out", searcher=searcher)
    assert [r["rank"] for r in res] == [1, 2, 3, 4, 5]
    assert "val-images-scene_000:0:0" not in [r["tile_id"] for r in res]  # never itself
    assert [r["distance"] for r in res] == sorted(r["distance"] for r in res)
    json_path, png_path = output_paths(base / "out", "val-images-scene_000:0:0", "emd")
    assert json.loads(json_path.read_text()) == res and png_path.stat().st_size > 1000
    # the crop, given as an image, is predicted exactly as when indexed: distance 0
    res = search_index(index, crop, k=index.count, by="emd", searcher=searcher)
    assert res[0]["distance"] == 0 and "crop:0:0" in [r["tile_id"] for r in res if r["distance"] == 0]
    for by in ("backbone", "vit"):
        res = search_index(index, crop, k=3, by=by, searcher=searcher)
        assert res[0]["tile_id"] == "crop:0:0" and res[0]["distance"] == pytest.approx(0, abs=1e-5)
    res = search_index(index, "crop:0:0", k=4, by="spatial", searcher=searcher)
    assert res[0]["score"] >= res[-1]["score"] and res[0]["method"] == "miou"
    ground = np.abs(np.subtract.outer(np.arange(7), np.arange(7))).astype(float)
    pot = search_index(index, "crop:0:0", k=4, by="emd", ground=ground, searcher=searcher)
    closed = search_index(index, "crop:0:0", k=4, by="emd", searcher=searcher)
    assert [r["distance"] for r in pot] == pytest.approx([r["distance"] for r in closed], abs=1e-6)


def test_compare_prints_every_method(built):
    index, crop, _ = built
    table = compare_methods(index, ["crop:0:0", "val-images-scene_000:64:64", crop], ms=(5, 10))
    assert list(table) == ["miou", "wiou", "pixel-precision", "backbone:l1", "backbone:l2",
                           "vit-vit_tiny_patch16_224:l2"]
    for row in table.values():
        assert list(row) == ["top1", "top5", "top10", "top5@5", "top5@10"]
        assert all(0 <= v <= 1 for v in row.values())


def test_near_duplicate_tile_is_found_first(tiny_run, tmp_path):
    """Ground-truth masks: chip (0,0)'s labels copied to (128,128) with 12 pixels changed."""
    image, mask_path = _scene(tiny_run)
    with rasterio.open(mask_path) as f:
        profile, mask = f.profile, f.read(1)
    chips = {(y, x): mask[y : y + TILE, x : x + TILE] for y in range(0, 192, TILE) for x in range(0, 192, TILE)}
    src = max(chips, key=lambda p: len(np.unique(chips[p])))  # the most varied chip
    dst = next(p for p in chips if p != src)
    dup = chips[src].copy()
    dup[:3, :4] = (dup[:3, :4] + 1) % 7
    mask[dst[0] : dst[0] + TILE, dst[1] : dst[1] + TILE] = dup
    scene = tmp_path / "dup.tif"
    shutil.copy(image, scene)
    with rasterio.open(tmp_path / "dup_mask.tif", "w", **profile) as g:
        g.write(mask, 1)
    index = build_index(tiny_run.best_checkpoint, [scene], tile=TILE, out=tmp_path / "idx",
                        masks=[tmp_path / "dup_mask.tif"], progress=False)
    assert index.manifest["source"] == "ground-truth"
    res = search_index(index, f"dup:{src[0]}:{src[1]}", k=3, by="emd")
    assert res[0]["tile_id"] == f"dup:{dst[0]}:{dst[1]}"
    assert 0 < res[0]["distance"] < res[1]["distance"]
    # a custom class order is a different ground distance, stored in the manifest
    order = ["water", "forest", "cropland", "bare land", "road", "urban ground", "building"]
    other = build_index(tiny_run.best_checkpoint, [scene], tile=TILE, out=tmp_path / "idx",
                        masks=[tmp_path / "dup_mask.tif"], class_order=order, progress=False)
    assert RetrievalIndex(tmp_path / "idx").manifest["class_order"] == order
    assert not np.array_equal(other.cumulative, index.cumulative)  # replaced in place


def test_bad_input_is_reported(built, tmp_path):
    index, crop, base = built
    with pytest.raises(RsSegError, match="did you mean.*crop:0:0"):
        search_index(index, "crop:0:1", by="emd")
    with pytest.raises(RsSegError, match="query image not found"):
        search_index(index, tmp_path / "nothing.tif")
    with pytest.raises(RsSegError, match="unknown search method 'cosine'"):
        search_index(index, "crop:0:0", by="cosine")
    with pytest.raises(RsSegError, match="index folder not found"):
        RetrievalIndex(tmp_path / "missing")
    with pytest.raises(RsSegError, match="no index.json"):
        RetrievalIndex(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(base / "index", broken)
    np.save(broken / "cumulative.npy", np.zeros((3, 7), np.float32))
    with pytest.raises(RsSegError, match=r"cumulative.npy has shape \(3, 7\)"):
        RetrievalIndex(broken)
    (broken / "signatures.npy").unlink()
    with pytest.raises(RsSegError, match="index file missing.*signatures.npy"):
        RetrievalIndex(broken)
    manifest = json.loads((base / "index" / "index.json").read_text())
    manifest["classes"]["names"][0] = "desert"
    manifest["signature_classes"][0] = manifest["class_order"][0] = "desert"
    shutil.copytree(base / "index", tmp_path / "renamed")
    (tmp_path / "renamed" / "index.json").write_text(json.dumps(manifest))
    with pytest.raises(RsSegError, match="checkpoint .* has classes .* but index"):
        search_index(tmp_path / "renamed", crop, by="emd")
    (tmp_path / "notindex").mkdir()
    (tmp_path / "notindex" / "keep.txt").write_text("x")
    with pytest.raises(RsSegError, match="not an rsseg index; refusing"):
        build_index(index.manifest["checkpoint"], [crop], tile=TILE, out=tmp_path / "notindex", progress=False)
    with pytest.raises(RsSegError, match="no chip to index"):
        build_index(index.manifest["checkpoint"], [crop], tile=128, out=tmp_path / "small", progress=False)
    assert not (tmp_path / "small").exists()  # nothing half-written


# --------------------------------------------------------------------------- pretrained encoders

GEO = "encoder-geoembed-aerial-resnet18"


@pytest.fixture(scope="module")
def ssl_file(tmp_path_factory) -> Path:
    """An encoder exported as by ``rsseg pretrain``: the tiny run's U-Net, with its own stats."""
    from rsseg.config.model import UNetConfig
    from rsseg.models import build_model
    from rsseg.ssl import export_encoder

    torch.manual_seed(0)
    cfg = UNetConfig(base_width=4, depth=2)
    path = tmp_path_factory.mktemp("ssl") / "my ssl.safetensors"
    return export_encoder(build_model(cfg, 3, 2), cfg, path, in_channels=3, mean=[90.0] * 3, std=[40.0] * 3)


@pytest.fixture(scope="module")
def with_encoders(tiny_run, ssl_file, tmp_path_factory):
    """Index of the test scene and a one-chip crop, with geoembed and exported-file embeddings."""
    base = tmp_path_factory.mktemp("encoders")
    crop = _crop(_scene(tiny_run)[0], base / "crop.tif")
    index = build_index(tiny_run.best_checkpoint, [_scene(tiny_run)[0], crop], tile=TILE, out=base / "index",
                        embeddings=["encoder=geoembed-aerial-resnet18", f"encoder={ssl_file}"], progress=False)
    return index, crop


def test_encoder_embeddings_are_stored(with_encoders, ssl_file):
    index, _ = with_encoders
    info = index.manifest["embeddings"]
    assert list(info) == [GEO, "encoder-my_ssl"]  # a safe name: no ':' (metric) nor space
    assert info[GEO] == {"kind": "encoder", "dim": 512, "metric": "l2", "source": "geoembed-aerial-resnet18"}
    assert info["encoder-my_ssl"]["source"] == str(ssl_file.resolve())
    assert index.embeddings(GEO).shape == (10, 512)  # 9 chips of the scene, the crop
    assert index.embeddings("encoder-my_ssl").shape == (10, 16)  # the U-Net's deepest stage
    assert np.isfinite(index.embeddings(GEO)).all() and index.embeddings(GEO).std() > 0


def test_encoder_normalisation_is_the_one_it_expects(tiny_run, ssl_file):
    """geoembed: documented RGB in [-1, 1]; an exported file: the stats it was pretrained with."""
    from rsseg.models.encoders import pooled_embedding as pooled
    from rsseg.retrieval import EncoderSpec
    from rsseg.retrieval.embeddings import EncoderEmbedder
    from rsseg.trained.checkpoint import load_predictor

    def pooled_embedding(model, x):
        with torch.no_grad():
            return pooled(model, x)

    predictor = load_predictor(tiny_run.best_checkpoint)
    chips = np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32)).astype(np.uint8)
    geo = EncoderEmbedder(EncoderSpec("geoembed-aerial-resnet18"), predictor)
    assert geo.stats == "source"
    x = torch.from_numpy(chips).float() / 255
    np.testing.assert_allclose(geo(chips), pooled_embedding(geo.model, (x - 0.5) / 0.5).numpy(), rtol=1e-4, atol=1e-5)
    own = EncoderEmbedder(EncoderSpec(str(ssl_file)), predictor)
    assert own.stats == "file"
    x = torch.from_numpy(chips).float()
    np.testing.assert_allclose(own(chips), pooled_embedding(own.model, (x - 90) / 40).numpy(), rtol=1e-4, atol=1e-5)


def test_search_and_compare_by_encoder(with_encoders):
    index, crop = with_encoders
    searcher = Searcher(index)
    for by in (GEO, f"{GEO}:l1", "encoder-my_ssl"):  # an image is embedded as its chip was
        res = search_index(index, crop, k=3, by=by, searcher=searcher)
        assert res[0]["tile_id"] == "crop:0:0" and res[0]["distance"] == pytest.approx(0, abs=1e-3)
    res = search_index(index, "crop:0:0", k=4, by=GEO, searcher=searcher)
    assert res[0]["method"] == f"{GEO}:l2" and "crop:0:0" not in [r["tile_id"] for r in res]
    with pytest.raises(RsSegError, match="'encoder' needs exactly one encoder embedding.*my_ssl"):
        search_index(index, "crop:0:0", by="encoder", searcher=searcher)
    table = compare_methods(searcher, ["crop:0:0", "scene_000:64:64"], ms=(5,))
    assert list(table) == ["miou", "wiou", "pixel-precision", f"{GEO}:l2", "encoder-my_ssl:l2"]


def test_unknown_encoder_source_is_refused(tiny_run, tmp_path):
    scene = _scene(tiny_run)[0]
    with pytest.raises(RsSegError, match=r"encoder=nowhere: unknown encoder source.*geoembed-aerial-resnet18"):
        build_index(tiny_run.best_checkpoint, [scene], tile=TILE, out=tmp_path / "i",
                    embeddings=["encoder=nowhere"], progress=False)
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(1)}, plain)
    with pytest.raises(RsSegError, match="not an encoder file exported by `rsseg pretrain`"):
        build_index(tiny_run.best_checkpoint, [scene], tile=TILE, out=tmp_path / "i",
                    embeddings=[f"encoder={plain}"], progress=False)
    with pytest.raises(RsSegError, match="unknown embedding 'vit'.*encoder=SOURCE"):
        build_index(tiny_run.best_checkpoint, [scene], tile=TILE, out=tmp_path / "i",
                    embeddings=["vit"], progress=False)
    assert not (tmp_path / "i").exists()
