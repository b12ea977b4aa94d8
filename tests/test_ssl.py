"""Self-supervised pretraining (rsseg.ssl): the loss falls and views of a tile end up closer
than other tiles; the exported encoder loads into every compatible registered model (and is
kept by freeze_encoder); multi-date positives share their ground footprint (synthetic
GeoTIFFs with controlled transforms, and the six Sentinel-2 Strzegom dates); the linear
probe; clear errors for bad inputs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from rasterio.transform import from_origin
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds
from safetensors.torch import load_file

from rsseg.config import (
    SMPUNetConfig,
    SwinUNetConfig,
    UNetConfig,
    UNetSmallConfig,
    load_config,
    validate_config,
)
from rsseg.config.pretrain import PretrainConfig
from rsseg.errors import RsSegError
from rsseg.models import build_model, compatible_models, encoder_of
from rsseg.models.encoder_file import check_pretrained_file, read_metadata
from rsseg.models.encoders import encoder_signature, pooled_embedding
from rsseg.ssl.data import UnlabelledTiles, footprint_partners, scan_rasters
from rsseg.ssl.export import export_encoder
from rsseg.ssl.pretrain import collect_rasters, pretrain
from rsseg.ssl.probe import probe


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One thread: on a shared, busy CPU two threads wait on each other (measured 20x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(tiny_config_path, tmp_path, model: dict | None = None, **train):
    """The shared tiny synthetic dataset with a model and an output folder of this test."""
    raw = load_config(tiny_config_path).model_dump(mode="json")
    raw["model"] = model or {"name": "unet", "base_width": 4, "depth": 2}
    raw["train"] = {"threads": 1, "log_every_n_steps": 1, **train}
    raw["output"] = {"dir": str(tmp_path / "runs"), "name": "ssl"}
    return validate_config(raw)


def small(**kw) -> PretrainConfig:
    return PretrainConfig(**{"batch_size": 16, "tile_size": 48, "view_size": 32, **kw})


@pytest.fixture(scope="module")
def tiny_ssl(tiny_config_path, tmp_path_factory):
    """A short SimCLR run of the tiny U-Net's encoder on the synthetic scenes."""
    tmp = tmp_path_factory.mktemp("ssl")
    # fp32 on every CPU: the thresholds below are fp32's (`auto` = bf16 fell 0.28, not 0.4, on an
    # AVX-512 BF16 CPU); test_bf16_pretraining_step covers bf16
    cfg = config(tiny_config_path, tmp, precision="32")
    pcfg = small(epochs=12, tile_size=32, lr=1e-2, warmup_steps=2, schedule="constant")
    return cfg, pcfg, pretrain(cfg, pcfg, progress=False)


def fixed_pairs(cfg, n: int = 16):
    torch.manual_seed(1)
    rasters, _ = collect_rasters(cfg, small(), progress=False)
    ds = UnlabelledTiles(rasters, tile_size=48, view_size=32, mean=[128.0] * 3, std=[64.0] * 3,
                         augment=small().augment)
    pairs = [ds[i] for i in range(0, len(ds), max(1, len(ds) // n))][:n]
    return torch.stack([a for a, _ in pairs]), torch.stack([b for _, b in pairs])


def similarity_gap(model, v1, v2) -> float:
    """Mean cosine similarity of the two views of a tile minus that of views of other tiles."""
    model.eval()
    with torch.no_grad():
        a, b = F.normalize(pooled_embedding(model, v1), dim=1), F.normalize(pooled_embedding(model, v2), dim=1)
    sim = a @ b.T
    n = len(sim)
    return float(sim.diag().mean() - (sim.sum() - sim.diag().sum()) / (n * n - n))


def fixed_batch_loss(task, v1, v2) -> float:
    task.train()  # batch statistics, as in training; no gradient, weights untouched
    with torch.no_grad():
        return float(task.loss(v1, v2)[0])


def test_pretraining_loss_falls_and_views_of_a_tile_end_up_closer(tiny_ssl):
    from rsseg.ssl.method import SimCLRTask

    cfg, _, result = tiny_ssl
    assert result.steps == 48 and result.encoder.is_file() and result.last_checkpoint.is_file()
    rows = list(csv.DictReader((result.run_dir / "logs" / "metrics.csv").open()))
    losses = [float(r["ssl_loss_epoch"]) for r in rows if r.get("ssl_loss_epoch")]  # one per epoch
    assert len(losses) == 12 and np.mean(losses[-5:]) < losses[0] - 0.25, losses

    v1, v2 = fixed_pairs(cfg)
    hp = SimCLRTask.load_from_checkpoint(result.last_checkpoint, map_location="cpu").hparams
    torch.manual_seed(cfg.train.seed)
    untrained = SimCLRTask(hp["config"], hp["pretrain"], 3, hp["mean"], hp["std"])
    trained = SimCLRTask.load_from_checkpoint(result.last_checkpoint, map_location="cpu")
    assert fixed_batch_loss(trained, v1, v2) < fixed_batch_loss(untrained, v1, v2) - 0.4
    # the exported encoder alone (as `pretrained:` loads it): a tile's views closer than other tiles
    model = build_model(cfg.model.model_copy(update={"pretrained": str(result.encoder)}), 3, 2)
    gap = similarity_gap(model, v1, v2)
    assert gap > 0.1 and gap > similarity_gap(untrained.model, v1, v2) + 0.1


def test_resume_continues_the_run(tiny_ssl):
    cfg, pcfg, first = tiny_ssl
    more = pretrain(cfg, pcfg.model_copy(update={"epochs": 13}), resume=first.run_dir, progress=False)
    assert more.run_dir == first.run_dir and more.epochs == 13 and more.steps == first.steps + 4
    assert read_metadata(more.encoder)["steps"] == more.steps


def test_exported_encoder_metadata_and_freeze_encoder_keeps_it(tiny_ssl, tmp_path):
    from rsseg.training.train import train

    cfg, _, result = tiny_ssl
    meta = read_metadata(result.encoder)
    assert meta["encoder"] == encoder_signature(cfg.model) and meta["in_channels"] == 3
    assert len(meta["mean"]) == 3 and meta["method"] == "simclr"
    raw = cfg.model_dump(mode="json")
    raw["model"]["pretrained"] = str(result.encoder)
    raw["train"] = {"epochs": 1, "threads": 1, "freeze_encoder": True, "limit_train_batches": 2}
    raw["output"] = {"dir": str(tmp_path), "name": "frozen"}
    run = train(validate_config(raw), progress=False)
    state = torch.load(run.last_checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    saved = load_file(str(result.encoder))
    for key, value in saved.items():
        assert torch.equal(state[f"model.encoder.{key}"], value), key


@pytest.mark.bf16
def test_bf16_pretraining_step(tiny_config_path, tmp_path):
    cfg = config(tiny_config_path, tmp_path, precision="bf16")
    result = pretrain(cfg, small(epochs=1, limit_batches=1, batch_size=4), progress=False)
    assert result.steps == 1 and np.isfinite(result.loss)


def _assert_loads(path, model_cfg, in_channels: int = 3, bands: int | None = None):
    """Every encoder tensor of the built model equals the file's (the first conv adapted)."""
    saved = load_file(str(path))
    bands = bands or read_metadata(path)["in_channels"]
    model = build_model(model_cfg.model_copy(update={"pretrained": str(path)}), in_channels, 4)
    state = encoder_of(model).state_dict()
    assert set(saved) == set(state)
    adapted = 0
    for key, value in saved.items():
        if state[key].shape == value.shape:
            assert torch.equal(state[key], value), key
        else:
            adapted += 1
    assert adapted == (0 if in_channels == bands else 1)


def test_resnet18_encoder_loads_into_every_compatible_model(tiny_config_path, tmp_path):
    model = SMPUNetConfig(encoder="resnet18", decoder_channels=[8] * 5)
    cfg = config(tiny_config_path, tmp_path, model=model.model_dump(mode="json"))
    result = pretrain(cfg, small(epochs=1, limit_batches=1, batch_size=4, view_size=32), progress=False)
    targets = compatible_models(encoder_signature(cfg.model), build=True)
    assert {c.name for c in targets} == {"smp-unet", "smp-unetplusplus", "smp-deeplabv3plus"}
    for target in targets:
        _assert_loads(result.encoder, target)
    _assert_loads(result.encoder, model, in_channels=5)  # first convolution adapted to 5 bands
    with pytest.raises(RsSegError, match=str(result.encoder)):  # another encoder: names the file
        build_model(SMPUNetConfig(encoder="resnet34", pretrained=str(result.encoder)), 3, 4)
    with pytest.raises(RsSegError, match=rf"{result.encoder}.*model 'smp-unet'.*resnet34"):
        check_pretrained_file(result.encoder, SMPUNetConfig(encoder="resnet34"), 3)
    with pytest.raises(RsSegError, match=rf"{result.encoder} was pretrained on 3 bands.*has 4"):
        check_pretrained_file(result.encoder, model, 4)


def test_swin_encoder_trains_and_loads(tmp_path):
    """One SimCLR step on the Swin-T encoder (no Lightning run: its checkpoints are 300 MB)."""
    from rsseg.ssl.method import SimCLRTask
    from rsseg.ssl.pretrain import export_task

    cfg = validate_config({"model": {"name": "swin-unet", "drop_path_rate": 0.0}})
    task = SimCLRTask(cfg.model_dump(mode="json"), small(hidden_dim=32).model_dump(mode="json"), 4,
                      [0.0] * 4, [1.0] * 4)
    views = torch.randn(2, 4, 4, 32, 32)
    before = {k: v.clone() for k, v in task.encoder.state_dict().items()}
    loss, _ = task.loss(views[0], views[1])
    loss.backward()
    torch.optim.SGD(task.parameters(), lr=0.1).step()
    assert any(not torch.equal(before[k], v) for k, v in task.encoder.state_dict().items())
    path = export_task(task, tmp_path / "swin.safetensors")
    assert [c.name for c in compatible_models(encoder_signature(cfg.model))] == ["swin-unet"]
    _assert_loads(path, SwinUNetConfig(), in_channels=4)


def test_unet_encoder_fits_unet_small(tmp_path):
    torch.manual_seed(0)
    model_cfg = UNetConfig(base_width=32, depth=3)
    path = export_encoder(build_model(model_cfg, 3, 2), model_cfg, tmp_path / "e.pt", in_channels=3)
    assert {c.name for c in compatible_models(encoder_signature(model_cfg))} == {"unet", "unet-small"}
    assert read_metadata(path)["in_channels"] == 3
    small_model = build_model(UNetSmallConfig(pretrained=str(path)), 3, 2)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert all(torch.equal(encoder_of(small_model).state_dict()[k], v) for k, v in saved.items())


def test_probe_trains_a_linear_head_and_reports_miou(tiny_ssl, tmp_path):
    cfg, _, result = tiny_ssl
    out = probe(result.run_dir, cfg, epochs=1, out=tmp_path, progress=False)
    assert out.weights == str(result.encoder.resolve()) and out.stages == [0, 1, 2]
    assert out.steps > 0 and 0.0 <= out.miou <= 1.0 and out.metrics_path.is_file()
    last = probe("none", cfg, stages="last", epochs=1, progress=False)
    assert last.weights is None and last.stages == [2]


def test_probe_budget_ends_every_epoch_not_just_the_current_one(tiny_ssl, monkeypatch):
    """A spent budget with a huge epoch count: no more batches are drawn once time is up."""
    import sys

    probe_module = sys.modules["rsseg.ssl.probe"]  # the package re-exports a function of that name
    cfg, _, _ = tiny_ssl
    drawn = []
    original = probe_module.DataLoader.__iter__
    monkeypatch.setattr(probe_module.DataLoader, "__iter__", lambda self: drawn.append(1) or original(self))
    out = probe("none", cfg, epochs=10_000, max_minutes=1e-9, progress=False)  # spent at once
    assert out.steps == 0 and len(drawn) <= 1  # not one loader pass per remaining epoch


# --------------------------------------------------------------------------- same ground


def _coordinate_tif(path, transform, crs="EPSG:32633", size=(40, 48)):
    """Band 1/2 = easting/northing of each pixel centre: pixel values reveal the ground."""
    h, w = size
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x, y = transform.c + cols * transform.a, transform.f + rows * transform.e  # north-up grids
    data = np.stack([x - 500000, 6000000 - y]).astype(np.float32)
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=2, dtype="float32",
                       crs=crs, transform=transform) as dst:
        dst.write(data)
    return path


def test_multi_date_positives_share_the_ground_footprint(tmp_path):
    base = from_origin(500000, 6000000, 10, 10)
    paths = [
        _coordinate_tif(tmp_path / "a_2021.tif", base),
        _coordinate_tif(tmp_path / "a_2022.tif", base),  # same footprint, another date
        _coordinate_tif(tmp_path / "shifted.tif", from_origin(500080, 5999960, 10, 10)),  # 8 cols, 4 rows off
        _coordinate_tif(tmp_path / "other_crs.tif", base, crs="EPSG:32634"),
        _coordinate_tif(tmp_path / "coarser.tif", from_origin(500000, 6000000, 20, 20), size=(20, 24)),
    ]
    rasters = scan_rasters(paths)
    assert footprint_partners(rasters, "exact") == [[1], [0], [], [], []]
    assert footprint_partners(rasters, "overlap") == [[1, 2, 4], [0, 2, 4], [0, 1, 4], [], [0, 1, 2]]
    for mode in ("exact", "overlap"):
        torch.manual_seed(0)
        ds = UnlabelledTiles(rasters, tile_size=16, view_size=16, mean=[0, 0], std=[1, 1],
                             partners=footprint_partners(rasters, mode), other_date_p=1.0)
        seen = set()
        for index in range(len(ds)):
            for _ in range(4):
                pair = ds.draw(index)
                a, b = rasters[pair.first], rasters[pair.second]
                # same ground up to half a pixel of the partner's grid (exact on the same grid)
                half = 0.5 * b.transform[0] if b.transform[0] != a.transform[0] else 1e-6
                np.testing.assert_allclose(window_bounds(pair.window1, a.affine),
                                           window_bounds(pair.window2, b.affine), atol=half)
                first, second = ds.region(pair.first, pair.window1), ds.region(pair.second, pair.window2)
                np.testing.assert_allclose(first, second, atol=3 * half)  # values = ground coordinates
                seen.add((pair.first, pair.second))
        expected = {(0, 1), (1, 0)} if mode == "exact" else {(0, 2), (2, 0), (0, 4), (4, 2)}
        assert expected <= seen and (3, 3) in seen  # other CRS: only itself


@pytest.mark.realdata
def test_strzegom_dates_are_positives_of_the_same_ground(shared_data, tmp_path):
    root = shared_data / "sentinel2-strzegom"
    classes = [{"name": f"c{v}", "value": v} for v in range(1, 11)]
    cfg = validate_config({"data": {
        "dataset": "multispectral", "root": str(root), "images": "img_train/*.tif", "masks": "training_masks/*.tif",
        "classes": classes, "cache_dir": str(tmp_path), "split": {"train": ["*2021*", "*2022*"], "test": ["*2023*"]},
    }})
    rasters, names = collect_rasters(cfg, PretrainConfig(splits=["train", "test"]), progress=False)
    assert len(rasters) == 6 and names[0] == "B02" and len(names) == 10 and rasters[0].num_bands == 10
    partners = footprint_partners(rasters, "exact")
    assert all(sorted(p) == [j for j in range(6) if j != i] for i, p in enumerate(partners))
    with rasterio.open(rasters[0].path) as a, rasterio.open(rasters[5].path) as b:
        assert a.crs == b.crs and a.transform == b.transform and a.shape == b.shape
    ds = UnlabelledTiles(rasters, tile_size=64, view_size=32, mean=[1000.0] * 10, std=[500.0] * 10,
                         partners=partners, other_date_p=1.0)
    torch.manual_seed(0)
    for index in range(0, len(ds), 3):
        pair = ds.draw(index)
        assert pair.first != pair.second
        np.testing.assert_allclose(window_bounds(pair.window1, rasters[pair.first].affine),
                                   window_bounds(pair.window2, rasters[pair.second].affine))
    v1, v2 = ds[0]
    assert v1.shape == v2.shape == (10, 32, 32) and not torch.equal(v1, v2)


# --------------------------------------------------------------------------- bad input


def _tif(path, bands: int):
    with rasterio.open(path, "w", driver="GTiff", height=32, width=32, count=bands, dtype="uint8") as dst:
        dst.write(np.zeros((bands, 32, 32), dtype=np.uint8))
    return path


def test_pretrain_yaml_section(tmp_path):
    from rsseg.ssl.pretrain import load_pretrain_config

    path = tmp_path / "ssl.yaml"
    path.write_text("model: {name: smp-unet, encoder: resnet18}\npretrain: {temperature: 0.1, images: [imgs]}\n")
    cfg, pcfg = load_pretrain_config(path, ["pretrain.view_size=48"])
    assert cfg.model.encoder == "resnet18" and pcfg.temperature == 0.1 and pcfg.view_size == 48
    assert pcfg.images == [str(Path.cwd() / "imgs")]
    path.write_text("pretrain: {tempreture: 0.1}\n")
    with pytest.raises(RsSegError, match=r"(?s)ssl.yaml.*'pretrain.tempreture'; did you mean 'pretrain.temperature'"):
        load_pretrain_config(path)


def test_bad_pretraining_images_are_named(tiny_config_path, tmp_path):
    cfg = config(tiny_config_path, tmp_path)
    folder = tmp_path / "imgs"
    folder.mkdir()
    _tif(folder / "ok.tif", 3)
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(RsSegError, match="broken.jpg"):
        collect_rasters(cfg, PretrainConfig(dataset=False, images=[str(folder)]), progress=False)
    (folder / "broken.jpg").unlink()
    _tif(folder / "four.tif", 4)
    with pytest.raises(RsSegError, match="ok.tif gives 3 bands but .*four.tif gives 4"):
        collect_rasters(cfg, PretrainConfig(dataset=False, images=[str(folder)]), progress=False)
    with pytest.raises(RsSegError, match="ok.tif has 3 bands"):
        collect_rasters(cfg, PretrainConfig(dataset=False, images=[str(folder / "*.tif")], bands=[4]),
                        progress=False)
    with pytest.raises(RsSegError, match="no such file or folder"):
        collect_rasters(cfg, PretrainConfig(dataset=False, images=[str(tmp_path / "missing")]), progress=False)


def test_images_of_another_pixel_type_are_standardised_by_their_own_statistics(tmp_path):
    """uint16 Landsat-like digital numbers beside uint8 imagery: both end up near mean 0, std 1."""
    from rsseg.ssl.pretrain import foreign_pixel_types, image_stats

    rng = np.random.default_rng(0)
    paths = []
    for name, dtype, scale, offset in (("aerial.tif", "uint8", 40, 100), ("landsat.tif", "uint16", 900, 9000)):
        data = (offset + scale * rng.standard_normal((3, 64, 64))).clip(0, None).astype(dtype)
        path = tmp_path / name
        with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=3, dtype=dtype) as dst:
            dst.write(data)
        paths.append(path)
    rasters = scan_rasters(paths)
    assert [r.dtype for r in rasters] == ["uint8", "uint16"]
    main_type, own = foreign_pixel_types(rasters)
    assert main_type == "uint8" and set(own) == {1}
    mean, std = image_stats([rasters[0]])
    ds = UnlabelledTiles(rasters, tile_size=64, view_size=32, mean=mean, std=std, own_stats=own)
    window = Window(0, 0, 64, 64)
    for i in range(2):
        region = ds.region(i, window)
        assert abs(float(region.mean())) < 0.1 and abs(float(region.std()) - 1) < 0.1, (i, region.mean(), region.std())
