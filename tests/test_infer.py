"""Whole-scene inference: Border Correction stitching, GeoTIFF/PNG outputs, input errors."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import math  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import rasterio  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import Affine  # noqa: E402
from torch import nn  # noqa: E402

from rsseg.classes import ClassTable  # noqa: E402
from rsseg.errors import RsSegError  # noqa: E402
from rsseg.infer import (  # noqa: E402
    border_corrected_predict,
    count_windows,
    predict_file,
    predict_files,
    read_image,
)
from rsseg.predictor import Predictor  # noqa: E402

K = 4
CLASSES = ClassTable(
    names=("a", "b", "c", "d"),
    colors=((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)),
)


class _Float64(nn.Module):
    """Runs the wrapped model in float64 so batched and single-window runs agree exactly."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.double())


def make_predictor(window=256, keep=224, batch_size=4, mean=(100.0, 110.0, 120.0), std=(50.0,) * 3):
    torch.manual_seed(0)
    # receptive field radius 3: smaller than the margin, so tiles must be seamless
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, K, 1),
    )
    with torch.no_grad():  # zero biases so the predicted classes vary across the scene
        for layer in net:
            if isinstance(layer, nn.Conv2d):
                layer.bias.zero_()
    return Predictor(
        model=_Float64(net),
        classes=CLASSES,
        mean=list(mean),
        std=list(std),
        window=window,
        keep=keep,
        batch_size=batch_size,
        precision="32",
        channels_last=False,
    )


def reference_stitch(predictor: Predictor, image: np.ndarray) -> np.ndarray:
    """Naive Border Correction: one window at a time, plain loops, no batching."""
    win, keep = predictor.window, predictor.keep
    m = (win - keep) // 2
    x = predictor.select_and_normalize(image)
    _, h, w = x.shape
    nh, nw = math.ceil(h / keep), math.ceil(w / keep)
    x = np.pad(x, ((0, 0), (m, nh * keep - h + m), (m, nw * keep - w + m)), mode="reflect")
    out = np.zeros((nh * keep, nw * keep), dtype=np.uint8)
    with torch.no_grad():
        for i in range(nh):
            for j in range(nw):
                tile = x[:, i * keep : i * keep + win, j * keep : j * keep + win]
                logits = predictor.model(torch.from_numpy(np.ascontiguousarray(tile))[None])
                pred = logits[0].argmax(0).numpy().astype(np.uint8)
                centre = pred[m : m + keep, m : m + keep]
                out[i * keep : (i + 1) * keep, j * keep : (j + 1) * keep] = centre
    return out[:h, :w]


def random_image(h, w, dtype=np.uint8, seed=1):
    rng = np.random.default_rng(seed)
    # smooth-ish structure plus noise so classes vary across the scene
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(yy / 17.0 + c) * np.cos(xx / 23.0 - c) for c in range(3)])
    img = 120 + 80 * base + rng.normal(0, 20, size=(3, h, w))
    return np.clip(img, 0, 255).astype(dtype)


@pytest.mark.parametrize("shape", [(300, 517), (224, 448), (50, 70), (448, 224), (225, 1)])
def test_matches_reference_stitching(shape):
    predictor = make_predictor(batch_size=4)
    image = random_image(*shape)
    calls = []
    got = border_corrected_predict(predictor, image, progress=calls.append)
    assert got.shape == shape and got.dtype == np.uint8
    np.testing.assert_array_equal(got, reference_stitch(predictor, image))
    n = count_windows(*shape, 224)
    assert calls[-1] == n and calls == sorted(calls) and len(calls) == math.ceil(n / 4)
    assert got.max() < K
    if min(shape) > 1:
        assert len(np.unique(got)) > 1  # the comparison is not trivially all one class


def test_border_correction_is_seamless():
    """With the margin larger than the receptive field, tiling equals one whole-scene pass."""
    predictor = make_predictor(window=64, keep=48, batch_size=3)
    image = random_image(130, 150)
    got = border_corrected_predict(predictor, image)
    x = np.pad(predictor.select_and_normalize(image), ((0, 0), (8, 8), (8, 8)), mode="reflect")
    with torch.no_grad():
        whole = predictor.model(torch.from_numpy(x)[None])[0].argmax(0).numpy()
    np.testing.assert_array_equal(got, whole[8:-8, 8:-8])
    assert len(np.unique(got)) > 1


def test_window_equals_keep():
    predictor = make_predictor(window=64, keep=64, batch_size=5)
    image = random_image(100, 130)
    got = border_corrected_predict(predictor, image)
    np.testing.assert_array_equal(got, reference_stitch(predictor, image))


@pytest.mark.parametrize("window,keep", [(256, 223), (200, 224), (256, 0)])
def test_invalid_window_keep(window, keep):
    predictor = make_predictor(window=window, keep=keep)
    with pytest.raises(RsSegError, match="window"):
        border_corrected_predict(predictor, random_image(32, 32))


def test_band_mismatch_is_clear():
    predictor = make_predictor()
    with pytest.raises(RsSegError, match="band"):
        border_corrected_predict(predictor, random_image(32, 32)[:2])


def _write_geotiff(path, image, nodata=None):
    transform = Affine(0.3, 0.0, 512345.25, 0.0, -0.3, 5123456.75)
    with rasterio.open(
        path, "w", driver="GTiff", width=image.shape[2], height=image.shape[1],
        count=image.shape[0], dtype=image.dtype, crs=CRS.from_epsg(32633),
        transform=transform, nodata=nodata,
    ) as dst:
        dst.write(image)
    return transform


def test_geotiff_roundtrip_with_nodata(tmp_path):
    image = random_image(90, 260, dtype=np.uint16) * 4 + 1  # no zeros except the nodata block
    image[:, 10:20, 30:50] = 0
    src = tmp_path / "scene.tif"
    transform = _write_geotiff(src, image, nodata=0)
    predictor = make_predictor(mean=(400.0, 440.0, 480.0), std=(200.0,) * 3)
    out_dir = tmp_path / "out" / "nested"
    paths = predict_file(predictor, src, out_dir)
    assert set(paths) == {"classes", "color", "blend"}
    assert paths["classes"].name == "scene_classes.tif"
    with rasterio.open(paths["classes"]) as ds:
        assert ds.crs == CRS.from_epsg(32633)
        assert ds.transform == transform
        assert ds.nodata == 255
        assert ds.count == 1 and ds.dtypes[0] == "uint8"
        assert ds.profile["tiled"] and ds.profile["compress"].lower() == "deflate"
        cmap = ds.colormap(1)
        assert cmap[1] == (0, 255, 0, 255) and cmap[3] == (255, 255, 0, 255)
        classes = ds.read(1)
    assert (classes[10:20, 30:50] == 255).all()
    classes[10:20, 30:50] = 0
    assert classes.max() < K
    for key in ("color", "blend"):
        with Image.open(paths[key]) as im:
            assert im.size == (260, 90) and im.mode == "RGB"
    # atomic writes: only the three outputs, no temporary files
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(p.name for p in paths.values())


def test_png_and_jpeg_without_georeferencing(tmp_path):
    predictor = make_predictor()
    rgb = random_image(60, 80).transpose(1, 2, 0)
    for name in ("plain.png", "plain.jpg"):
        src = tmp_path / name
        Image.fromarray(rgb).save(src)
        image, profile = read_image(src)
        assert image.shape == (3, 60, 80) and profile["crs"] is None
        paths = predict_file(predictor, src, tmp_path / name.replace(".", "_"))
        with rasterio.open(paths["classes"]) as ds:
            assert ds.crs is None
            assert ds.transform == Affine.identity()
            assert ds.read(1).max() < K


def test_large_scene_preview_is_downsampled(tmp_path, monkeypatch):
    import rsseg.infer as infer

    monkeypatch.setattr(infer, "MAX_PREVIEW", 100)
    src = tmp_path / "big.png"
    Image.fromarray(random_image(150, 250).transpose(1, 2, 0)).save(src)
    paths = predict_file(make_predictor(window=64, keep=48, batch_size=8), src, tmp_path / "o")
    with Image.open(paths["color"]) as im:
        assert im.size == (84, 50)  # step 3
    with rasterio.open(paths["classes"]) as ds:
        assert (ds.width, ds.height) == (250, 150)


def test_unreadable_inputs(tmp_path):
    predictor = make_predictor()
    bogus = tmp_path / "notes.tif"
    bogus.write_text("this is not an image\n" * 10)
    with pytest.raises(RsSegError, match="notes.tif.*not a readable image"):
        predict_file(predictor, bogus, tmp_path / "out")

    good = tmp_path / "good.tif"
    _write_geotiff(good, random_image(200, 200))
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(RsSegError, match="truncated.tif.*not a readable image"):
        read_image(truncated)

    with pytest.raises(RsSegError, match="input not found: .*missing.tif"):
        predict_file(predictor, tmp_path / "missing.tif", tmp_path / "out")


def test_predict_files_checks_inputs_first(tmp_path):
    predictor = make_predictor(window=64, keep=48)
    a = tmp_path / "a.png"
    Image.fromarray(random_image(40, 50).transpose(1, 2, 0)).save(a)
    out = tmp_path / "out"
    with pytest.raises(RsSegError, match="nope.png"):
        predict_files(predictor, [a, tmp_path / "nope.png"], out, show_progress=False)
    assert not out.exists()  # failed before any work

    (tmp_path / "sub").mkdir()
    b = tmp_path / "sub" / "a.jpg"
    Image.fromarray(random_image(40, 50).transpose(1, 2, 0)).save(b)
    with pytest.raises(RsSegError, match="overwrite"):
        predict_files(predictor, [a, b], out, show_progress=False)

    c = tmp_path / "sub" / "c.jpg"
    Image.fromarray(random_image(30, 20).transpose(1, 2, 0)).save(c)
    results = predict_files(predictor, [a, c], out, show_progress=True)
    assert [r["classes"].name for r in results] == ["a_classes.tif", "c_classes.tif"]
    assert len(list(out.iterdir())) == 6


def test_unwritable_out_dir(tmp_path):
    a = tmp_path / "a.png"
    Image.fromarray(random_image(20, 20).transpose(1, 2, 0)).save(a)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RsSegError, match="file"):
        predict_file(make_predictor(), a, blocker / "out")
