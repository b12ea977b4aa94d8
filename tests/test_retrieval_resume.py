"""Index builds that survive bad input: an interrupted build resumes without re-predicting
finished scenes (and equals an uninterrupted one), images with the wrong band count are named,
and backbone embeddings of a zoo model (smp-unet resnet18) go through ``encoder_of``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from rsseg.classes import ClassTable
from rsseg.errors import RsSegError
from rsseg.retrieval import RetrievalIndex, build_index, search_index
from rsseg.retrieval import build as build_mod
from rsseg.retrieval.staging import staging_dir

TILE = 64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rewrite_checkpoint(
    src: Path, dst: Path, model: dict | None = None, classes: ClassTable | None = None, infer: dict | None = None,
) -> Path:
    """A checkpoint like ``src`` (normalisation, bands) with another ``model`` section and/or
    class table (the network then freshly built, seeded random weights: a zoo model's
    checkpoint without a training run) and/or other ``infer`` settings."""
    from rsseg.config import Config
    from rsseg.models import build_model

    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    hp = ckpt["hyper_parameters"]
    hp["config"]["infer"] = {**hp["config"].get("infer", {}), **(infer or {})}
    state = ckpt["state_dict"]
    if model is not None or classes is not None:
        hp["config"]["model"] = model or hp["config"]["model"]
        hp["classes"] = classes.to_dict() if classes is not None else hp["classes"]
        cfg = Config.model_validate(hp["config"])
        torch.manual_seed(0)
        net = build_model(cfg.model, len(hp["mean"]), len(hp["classes"]["names"]), load_pretrained=False)
        state = {f"model.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": hp}, dst)
    return dst


@pytest.fixture(scope="module")
def fast_ckpt(tiny_run, tmp_path_factory) -> Path:
    """The tiny run's checkpoint predicting 64 px windows (one model call per chip, fast)."""
    path = tmp_path_factory.mktemp("ckpt") / "fast.ckpt"
    return rewrite_checkpoint(tiny_run.best_checkpoint, path, infer={"window": TILE, "keep": TILE})


def _copy_scenes(run, folder: Path, size: int = 2 * TILE) -> list[Path]:
    """``size`` px crops of the tiny run's test, val and first train scene: a.tif, b.tif, c.tif."""
    data = Path(run.run_dir).parent.parent / "data"
    folder.mkdir(exist_ok=True)
    out = []
    for name, split in zip("abc", ("test", "val", "train"), strict=True):
        with rasterio.open(data / split / "images" / "scene_000.tif") as src:
            profile = src.profile | {"width": size, "height": size}
            pixels = src.read(window=((0, size), (0, size)))
        with rasterio.open(folder / f"{name}.tif", "w", **profile) as dst:
            dst.write(pixels)
        out.append(folder / f"{name}.tif")
    return out


def _digest(image: np.ndarray) -> str:
    return hashlib.sha1(image.tobytes()).hexdigest()


def _assert_same_index(a: RetrievalIndex, b: RetrievalIndex) -> None:
    ma, mb = dict(a.manifest), dict(b.manifest)
    ma.pop("created"), mb.pop("created")
    assert ma == mb
    np.testing.assert_array_equal(a.signatures, b.signatures)
    np.testing.assert_array_equal(a.cumulative, b.cumulative)
    assert a.tiles == b.tiles
    for name in a.embedding_names:
        np.testing.assert_array_equal(a.embeddings(name), b.embeddings(name))
    for scene in a.scenes:
        np.testing.assert_array_equal(a.scene_mask(scene), b.scene_mask(scene))


def test_interrupted_build_resumes_without_repredicting(tiny_run, fast_ckpt, tmp_path, monkeypatch):
    scenes = _copy_scenes(tiny_run, tmp_path / "scenes")
    from rsseg.infer import read_image

    digests = {_digest(read_image(p)[0]): p.stem for p in scenes}
    real = build_mod.predict_scene
    calls: list[str] = []
    fail_at = [0]  # the call (1-based) that raises; 0: never

    def counting(predictor, image, nodata):
        calls.append(digests[_digest(image)])
        if len(calls) == fail_at[0]:
            raise KeyboardInterrupt  # a kill part-way through
        return real(predictor, image, nodata)

    monkeypatch.setattr(build_mod, "predict_scene", counting)
    ckpt = fast_ckpt

    def build(out: Path, fail: int = 0) -> RetrievalIndex:
        calls.clear()
        fail_at[0] = fail
        return build_index(ckpt, scenes, tile=TILE, out=out, embeddings=("backbone",), progress=False)

    ref = build(tmp_path / "ref")
    assert calls == ["a", "b", "c"] and not staging_dir(tmp_path / "ref").exists()

    out = tmp_path / "idx"
    with pytest.raises(KeyboardInterrupt):
        build(out, fail=2)
    assert calls == ["a", "b"] and not out.exists()
    staged = staging_dir(out)
    assert len(list(staged.glob("*.json"))) == 2  # build.json and scene a
    resumed = build(out)
    assert calls == ["b", "c"]  # scene a is not predicted again
    _assert_same_index(resumed, ref)
    assert not staged.exists()  # removed once the index is written

    # a finished scene whose file changed since is predicted again; so is every scene when an
    # option that changes results differs, while the EMD class order alone reuses them
    with pytest.raises(KeyboardInterrupt):
        build(out, fail=2)
    st = scenes[0].stat()
    os.utime(scenes[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    build(out)
    assert calls == ["a", "b", "c"]
    with pytest.raises(KeyboardInterrupt):
        build(out, fail=3)
    calls.clear()
    fail_at[0] = 0
    order = list(reversed(ref.manifest["class_order"]))
    other = build_index(ckpt, scenes, tile=TILE, out=out, embeddings=("backbone",), class_order=order,
                        progress=False)
    assert calls == ["c"] and other.manifest["class_order"] == order
    with pytest.raises(KeyboardInterrupt):
        build(out, fail=3)
    calls.clear()
    fail_at[0] = 0
    build_index(ckpt, scenes, tile=TILE, out=out, min_mass=0.4, progress=False)
    assert calls == ["a", "b", "c"]


def test_staged_scene_that_is_corrupt_is_redone(tiny_run, fast_ckpt, tmp_path, monkeypatch):
    scenes = _copy_scenes(tiny_run, tmp_path / "scenes")[:2]
    calls = []
    real = build_mod.predict_scene

    def counting(predictor, image, nodata):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return real(predictor, image, nodata)

    monkeypatch.setattr(build_mod, "predict_scene", counting)
    out = tmp_path / "idx"
    with pytest.raises(RuntimeError, match="out of memory"):
        build_index(fast_ckpt, scenes, tile=TILE, out=out, progress=False)
    (npz,) = staging_dir(out).glob("*.npz")
    npz.write_bytes(b"truncated")  # e.g. a full disk while staging
    calls[:] = [1, 1, 1]  # no more failures
    index = build_index(fast_ckpt, scenes, tile=TILE, out=out, progress=False)
    assert len(calls) == 5 and index.count == 8  # both scenes predicted
    assert not staging_dir(out).exists()


def _write(path: Path, data: np.ndarray) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype) as dst:
        dst.write(data)
    return path


def test_wrong_band_count_names_the_file(tiny_run, fast_ckpt, tmp_path):
    scenes = _copy_scenes(tiny_run, tmp_path / "scenes")[:1]
    index = build_index(fast_ckpt, scenes, tile=TILE, out=tmp_path / "idx", progress=False)
    two = _write(tmp_path / "two_bands.tif", np.zeros((2, TILE, TILE), np.uint8))
    with pytest.raises(RsSegError, match=r"two_bands\.tif has 2 band\(s\) but the model expects 3"):
        search_index(index, two, by="emd")
    five = _write(tmp_path / "five_bands.tif", np.zeros((5, TILE, TILE), np.uint8))
    with pytest.raises(RsSegError, match=r"five_bands\.tif has 5 band\(s\)"):
        build_index(fast_ckpt, [*scenes, five], tile=TILE, out=tmp_path / "bad", progress=False)
    assert not staging_dir(tmp_path / "bad").exists()  # refused before anything is predicted
    (tmp_path / "junk.tif").write_bytes(b"not an image")
    with pytest.raises(RsSegError, match=r"junk\.tif is not a readable image"):
        search_index(index, tmp_path / "junk.tif", by="emd")


@pytest.mark.bf16
def test_backbone_embeddings_of_an_smp_unet_resnet18(tiny_run, tmp_path):
    from rsseg.trained.checkpoint import load_predictor
    from rsseg.infer import read_image
    from rsseg.models import encoder_of

    ckpt = rewrite_checkpoint(tiny_run.best_checkpoint, tmp_path / "smp.ckpt", infer={"window": TILE, "keep": TILE},
                              model={"name": "smp-unet", "encoder": "resnet18"})
    scenes = _copy_scenes(tiny_run, tmp_path / "scenes")[:1]
    index = build_index(ckpt, scenes, tile=TILE, out=tmp_path / "idx", embeddings=("backbone",), progress=False)
    emb = index.embeddings("backbone")
    assert index.manifest["embeddings"]["backbone"] == {"kind": "backbone", "dim": 512, "metric": "l1"}
    assert emb.shape == (4, 512) and np.isfinite(emb).all()
    # row a:64:0 is the global max of resnet18's last stage (layer4) on that chip
    predictor = load_predictor(ckpt)
    encoder = encoder_of(predictor.model)
    assert type(encoder).__name__ == "ResNetEncoder"
    chip = read_image(scenes[0])[0][:, 64:128, 0:64]
    assert predictor.precision == "32"  # index embeddings are fp32 whatever `auto` means here
    with torch.inference_mode():
        feats = encoder(torch.from_numpy(predictor.select_and_normalize(chip))[None])[-1]
    assert feats.shape[1] == 512
    row = index.row_of("a:64:0")
    np.testing.assert_allclose(emb[row], feats.amax(dim=(-2, -1))[0].numpy(), rtol=1e-4, atol=1e-5)

    res = search_index(index, "a:64:0", k=3, by="backbone")
    assert "a:64:0" not in [r["tile_id"] for r in res]
    assert [r["distance"] for r in res] == sorted(r["distance"] for r in res)
    assert res[0]["method"] == "backbone:l1"
    crop = _write(tmp_path / "crop.tif", chip)  # the same pixels as an image query: itself first
    res = search_index(index, crop, k=3, by="backbone:l2", checkpoint=ckpt)
    assert res[0]["tile_id"] == "a:64:0" and res[0]["distance"] == pytest.approx(0, abs=1e-4)
    assert json.loads((index.path / "index.json").read_text())["checkpoint"] == str(ckpt.resolve())


def test_workers_build_the_same_index_and_finish_a_partial_build(tiny_run, fast_ckpt, tmp_path, monkeypatch):
    """``workers=2`` (a local Dask cluster) gives the index a single process gives, and a rerun
    after a kill sends only the scenes not yet staged to the workers."""
    scenes = _copy_scenes(tiny_run, tmp_path / "scenes")
    ref = build_index(fast_ckpt, scenes, tile=TILE, out=tmp_path / "ref", embeddings=("backbone",), progress=False)
    real_predict, calls = build_mod.predict_scene, []

    def killed_at_second(predictor, image, nodata):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_predict(predictor, image, nodata)

    out = tmp_path / "idx"
    with monkeypatch.context() as m:
        m.setattr(build_mod, "predict_scene", killed_at_second)
        with pytest.raises(KeyboardInterrupt):
            build_index(fast_ckpt, scenes, tile=TILE, out=out, embeddings=("backbone",), progress=False)
    real_dask, sent = build_mod._index_on_dask, []

    def spy(spec, todo, workers, advance):
        sent.extend(sid for _, sid, _, _ in todo)
        return real_dask(spec, todo, workers, advance)

    monkeypatch.setattr(build_mod, "_index_on_dask", spy)
    index = build_index(fast_ckpt, scenes, tile=TILE, out=out, embeddings=("backbone",), progress=False, workers=2)
    assert sent == ["b", "c"]  # scene a was staged before the kill
    _assert_same_index(index, ref)
    assert not staging_dir(out).exists()
