"""Whole-scene inference: window planning, stitching modes, streaming reads, seam score."""

import math

import numpy as np
import pytest
import torch
from infer_helpers import (
    CLASSES,
    BitClasses,
    K,
    bit_classes,
    make_predictor,
    random_image,
    reference_stitch,
    seed_stitch,
    whole_scene,
    write_geotiff,
)
from torch import nn

from rsseg.config.infer import InferConfig
from rsseg.errors import RsSegError
from rsseg.infer import (
    PredictOptions,
    border_corrected_predict,
    count_windows,
    plan_grid,
    predict_file,
    seam_score,
)
from rsseg.infer.reader import ArraySource, StripReader
from rsseg.infer.stitch import ramp
from rsseg.infer.windows import Grid, balanced_sizes, equal_sizes
from rsseg.models.unet import UNet
from rsseg.trained.predictor import Predictor


@pytest.mark.parametrize("shape", [(300, 517), (224, 448), (50, 70), (448, 224), (225, 1)])
def test_reference_matches_straightforward_stitching(shape):
    predictor = make_predictor(batch_size=4)
    image = random_image(*shape)
    calls = []
    got = border_corrected_predict(predictor, image, progress=calls.append)
    assert got.shape == shape and got.dtype == np.uint8
    np.testing.assert_array_equal(got, reference_stitch(predictor, image))
    n = count_windows(*shape, 224)
    assert calls[-1] == n and calls == sorted(calls) and len(calls) == math.ceil(shape[0] / 224)
    assert got.max() < K
    if min(shape) > 1:
        assert len(np.unique(got)) > 1  # the comparison is not trivially all one class


def test_bit_classes_see_one_unit_in_the_last_place():
    z = torch.randn(2, 5, 40, 40, generator=torch.Generator().manual_seed(0))
    bumped = z.clone()
    bumped[:, 3] = torch.nextafter(z[:, 3], torch.tensor(float("inf")))
    a, b = bit_classes(z).argmax(1), bit_classes(bumped).argmax(1)
    assert (a != b).float().mean() > 0.9
    assert len(torch.unique(a)) == K


@pytest.mark.parametrize("threads", [1, 2])
def test_reference_is_bitwise_the_seed_procedure_as_benchmarked(threads):
    """``make bench-infer``'s (a) against (b): the demo's U-Net in fp32 and channels_last (what
    ``load_predictor`` picks on a CPU) at the checkpoint's batch 8, against the seed's per-patch
    loop at batch 1 in the same layout. ``BitClasses`` makes classes of the logits' last bits,
    so equal maps mean bitwise-equal logits at every kept pixel, not just equal argmaxes.
    The layout matters (fp32 NCHW and channels_last round differently: 1 pixel of 49 M
    differed when the bench's seed ran NCHW); the batch size does not (nor ``low_memory``'s
    batch 4, nor batch 1, which is the per-patch arithmetic by construction)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        predictor = Predictor(model=BitClasses(UNet(3, K, base_width=16, depth=4)), classes=CLASSES,
                              mean=[100.0, 110.0, 120.0], std=[50.0] * 3, defaults=InferConfig(batch_size=8), precision="32", channels_last=True)
        image = random_image(200, 1800)  # one strip of 9 windows: batches of 8 and 1
        seed = seed_stitch(predictor, image)
        assert np.bincount(seed.ravel(), minlength=K).min() > 0.2 * seed.size / K
        np.testing.assert_array_equal(border_corrected_predict(predictor, image), seed)
        if threads == 1:
            for options in ({"low_memory": True}, {"batch_size": 1}):
                np.testing.assert_array_equal(border_corrected_predict(predictor, image, **options), seed)
    finally:
        torch.set_num_threads(before)


def test_streamed_file_equals_straightforward_stitching(tmp_path):
    """The streamed GeoTIFF path (strips, row reuse, block-aligned writes) changes nothing."""
    import rasterio

    predictor = make_predictor(window=64, keep=48, batch_size=3)
    image = random_image(301, 205)  # neither side a multiple of 48 nor of the 256 px tiles
    src = write_geotiff(tmp_path / "s.tif", image)
    paths = predict_file(predictor, src, tmp_path / "out")
    with rasterio.open(paths["classes"]) as ds:
        np.testing.assert_array_equal(ds.read(1), reference_stitch(predictor, image))


def test_all_modes_are_seamless_when_the_margin_covers_the_context():
    """Margin (8 px) > receptive field (3 px): reference and fast equal one whole-scene pass;
    naive tiling does not; blending differs only in the few px it takes from window edges."""
    predictor = make_predictor(window=64, keep=48, batch_size=3)
    image = random_image(130, 150)
    whole = whole_scene(predictor, image)
    for mode in ("reference", "fast"):
        np.testing.assert_array_equal(border_corrected_predict(predictor, image, mode=mode, fast_tile=64), whole)
    naive = border_corrected_predict(predictor, image, mode="naive")
    assert (naive != whole).any()
    for blend in ("linear", "cosine"):
        got = border_corrected_predict(predictor, image, mode="fast", fast_tile=64, blend=blend)
        assert (got == whole).mean() > 0.995
    assert len(np.unique(whole)) > 1


def test_fast_grid_is_balanced():
    g = plan_grid(6800, 7200, "fast", 256, 224, 1024)
    assert g.row_sizes == (976,) * 5 + (960,) * 2 and g.col_sizes == (800,) * 9
    assert (g.keep_y, g.keep_x, g.margin, g.rows, g.cols) == (976, 800, 16, 7, 9)
    assert (g.win_y, g.win_x) == (1008, 832) and g.row_starts[-1] == 6800 and g.col_starts[-1] == 7200
    assert equal_sizes(7200, 1024, 16) == (800,) * 9  # 9 x 832 px computed, not 8 x 944
    assert equal_sizes(2048, 1024, 16) == (1024,) * 2 and equal_sizes(10, 1024, 16) == (16,)
    assert equal_sizes(1100, 1024, 16) == (560,) * 2  # 2 x 592 px computed, not 3 x 400
    uneven = Grid(100, 100, (64, 48), (32, 32, 16, 16, 16), 8)
    assert uneven.col_batches(2) == [[0, 1], [2, 3], [4]]  # a forward pass takes equal widths
    assert balanced_sizes(100, 1024) == (112,) and balanced_sizes(5, 1024) == (16,)
    for n, tile in ((7201, 1024), (33, 16), (4097, 480), (16, 1024)):
        sizes = balanced_sizes(n, tile)
        assert len(sizes) == -(-n // tile) and n <= sum(sizes) < n + 16
        assert all(s % 16 == 0 and s <= tile for s in sizes) and max(sizes) - min(sizes) <= 16
    ref = plan_grid(6800, 7200, "reference", 256, 224)
    assert ref.windows == count_windows(6800, 7200, 224) == 31 * 33
    assert plan_grid(10, 10, "naive", 256, 224).margin == 0
    with pytest.raises(RsSegError, match="unknown prediction mode"):
        plan_grid(10, 10, "quick", 256, 224)


def test_low_memory_caps_the_pixels_of_a_forward_pass():
    from rsseg.infer import PredictOptions
    from rsseg.infer.engine import batch_size_for
    from rsseg.infer.options import LOW_MEMORY_PIXELS

    predictor = make_predictor(batch_size=8)
    for mode, full, low in (("reference", 8, 4), ("fast", 1, 1)):
        opts = PredictOptions.build(predictor, mode=mode, low_memory=True)
        grid = opts.grid(6800, 7200)
        batch = batch_size_for(opts.batch_size, opts.window, grid)
        assert batch == low and batch * grid.win_y * grid.win_x <= LOW_MEMORY_PIXELS
        default = PredictOptions.build(predictor, mode=mode)
        assert batch_size_for(default.batch_size, default.window, default.grid(6800, 7200)) == full
    fast = PredictOptions.build(predictor, mode="fast", low_memory=True).grid(6800, 7200)
    assert (fast.keep_y, fast.keep_x, fast.margin) == (464, 480, 16)
    image = random_image(130, 150)  # maps: reference unchanged, fast as with a smaller tile
    np.testing.assert_array_equal(border_corrected_predict(predictor, image, low_memory=True),
                                  border_corrected_predict(predictor, image))


def test_window_equals_keep():
    predictor = make_predictor(window=64, keep=64, batch_size=5)
    image = random_image(100, 130)
    np.testing.assert_array_equal(border_corrected_predict(predictor, image), reference_stitch(predictor, image))


@pytest.mark.parametrize("window,keep,message", [
    (256, 223, "^--window 256 --keep 223: invalid border correction window 256 / keep 223: need"),
    (200, 224, "^--window 200 --keep 224: invalid border correction window 200 / keep 224: need"),
    (256, 0, "^--keep 0: Input should be greater than or equal to 8"),
])
def test_invalid_window_keep(window, keep, message):
    with pytest.raises(RsSegError, match=message):
        border_corrected_predict(make_predictor(), random_image(32, 32), window=window, keep=keep)


def test_band_mismatch_is_clear():
    with pytest.raises(RsSegError, match="band"):
        border_corrected_predict(make_predictor(), random_image(32, 32)[:2])


class CountingSource(ArraySource):
    def __init__(self, image):
        super().__init__(image)
        self.reads = []

    def read_rows(self, r0, r1):
        self.reads.append((r0, r1))
        return super().read_rows(r0, r1)


def test_reader_reads_each_row_once_and_holds_one_strip():
    image = random_image(1000, 40)
    grid = plan_grid(1000, 40, "reference", 64, 48)
    source = CountingSource(image)
    reader = StripReader(source, grid)
    for i in range(grid.rows):
        strip = reader.strip(i)
        y0, y1 = grid.kept_rows(i)
        np.testing.assert_array_equal(strip.scene_rows(y0, y1), image[:, y0:y1])
    rows = [r for a, b in source.reads for r in range(a, b)]
    assert rows == list(range(1000))  # in order, each once
    assert reader.max_rows_held <= grid.win_y  # memory: one strip, not the scene


def test_reflection_matches_numpy_pad_for_tiny_scenes():
    """Pads larger than the scene reflect repeatedly, exactly like np.pad."""
    predictor = make_predictor(window=64, keep=16, batch_size=2)
    for shape in [(3, 5), (1, 40), (17, 2)]:
        image = random_image(*shape)
        np.testing.assert_array_equal(border_corrected_predict(predictor, image), reference_stitch(predictor, image))


def test_tta_is_exact_for_a_symmetric_model():
    """Kernels symmetric under the 8 D4 transforms: TTA must give back the plain prediction,
    which checks that every transform is undone correctly."""
    image = random_image(120, 90)
    p = make_predictor(window=64, keep=48)
    with torch.no_grad():
        for conv in p.model.inner:
            if isinstance(conv, nn.Conv2d):
                w = conv.weight
                sym = sum(torch.rot90(f, k, dims=(2, 3)) for f in (w, w.flip(3)) for k in range(4))
                conv.weight.copy_(sym / 8)
    plain = border_corrected_predict(p, image)
    np.testing.assert_array_equal(border_corrected_predict(p, image, tta=True), plain)
    assert len(np.unique(plain)) > 1


def test_blend_ramps_sum_to_one():
    for kind in ("linear", "cosine"):
        w = ramp(48 + 16, 8, kind)
        np.testing.assert_allclose(w[-16:] + w[:16], 1.0, atol=1e-6)  # a fall + the next rise
        assert w[16:-16].min() == 1.0 and w.min() > 0


@pytest.mark.parametrize("blend", [None, "linear", "cosine"])
def test_stitchers_place_unequal_tiles(blend):
    """A per-pixel model (1x1 kernels): any stitching or blend of its windows is the
    whole-scene map, so a window placed wrongly or weighted with the wrong shape shows up.
    Rows and columns of unequal sizes, two windows per forward pass (the fast grid's rows
    are unequal too)."""
    from rsseg.infer import PredictOptions
    from rsseg.infer.stream import run_grid

    predictor = make_predictor(window=64, keep=48, batch_size=20, kernel=1)
    image = random_image(150, 215)
    out = np.full((150, 215), 255, np.uint8)

    def emit(y0, y1, classes, probs, raw):
        out[y0:y1] = classes

    grid = Grid(150, 215, (48, 64, 48), (64, 64, 48, 48), 8)  # a short strip, then a tall one
    assert grid.col_batches(12) == [[0, 1], [2, 3]]  # batch_size_for: 20 x 64² // 80² = 12
    run_grid(predictor, ArraySource(image), grid, emit, options=PredictOptions.build(predictor, mode="fast", blend=blend))
    np.testing.assert_array_equal(out, whole_scene(predictor, image))
    assert plan_grid(150, 215, "fast", 64, 48, 64).row_sizes == (64, 48, 48)


def test_blending_needs_a_margin():
    with pytest.raises(RsSegError, match="blending"):
        border_corrected_predict(make_predictor(window=64, keep=64), random_image(20, 20), blend="linear")
    with pytest.raises(RsSegError, match="unknown blending"):
        border_corrected_predict(make_predictor(), random_image(20, 20), blend="gauss")


def test_seam_score_sees_tile_seams():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:400, 0:400]
    smooth = ((np.sin(yy / 23.0) + np.cos(xx / 31.0) + rng.normal(0, 0.05, (400, 400))) > 0).astype(np.uint8)
    clean = seam_score(smooth, 50)
    assert 0.5 < clean.score < 1.5 and clean.boundary_pairs > 0
    seamy = smooth.copy()
    seamy[:, 49::50] = 1 - seamy[:, 49::50]  # a column flipped at every tile edge
    assert seam_score(seamy, 50).score > 5
    assert seam_score(np.full((10, 10), 255, np.uint8), 5).score == 1.0  # nodata only


def test_model_must_keep_the_input_size():
    class Shrinks(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], K, x.shape[2] // 2, x.shape[3] // 2)

    p = make_predictor(window=64, keep=48)
    p.model = Shrinks()
    with pytest.raises(RsSegError, match="keep the input size"):
        border_corrected_predict(p, random_image(30, 30))


class NumpyModel:
    """A numpy model (``takes_numpy``), as onnxruntime is, computing the torch net's logits."""

    takes_numpy = True

    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.net(torch.from_numpy(np.ascontiguousarray(x))).numpy()


@pytest.mark.parametrize("options", [{}, {"mode": "fast", "fast_tile": 64}, {"tta": True},
                                     {"mode": "fast", "fast_tile": 64, "blend": "cosine"}])
def test_numpy_models_run_without_torch_ops_and_agree(options, tmp_path):
    """A numpy model (the ONNX engine's kind) takes the numpy path (softmax, argmax, D4 in
    numpy, so torch need not be imported) and gives the torch path's maps."""
    import rasterio

    torch_p = make_predictor(window=64, keep=48, batch_size=3)
    numpy_p = make_predictor(window=64, keep=48, batch_size=3)
    numpy_p.model = NumpyModel(torch_p.model)
    assert numpy_p.numpy_native and not torch_p.numpy_native
    image = random_image(130, 150)
    a = border_corrected_predict(torch_p, image, **options)
    b = border_corrected_predict(numpy_p, image, **options)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) > 1
    src = write_geotiff(tmp_path / "s.tif", image)
    maps = {}
    for name, p in (("torch", torch_p), ("numpy", numpy_p)):
        paths = predict_file(p, src, tmp_path / name, probabilities=True, **options)
        with rasterio.open(paths["probabilities"]) as ds:
            maps[name] = ds.read().astype(int)
    assert np.abs(maps["torch"] - maps["numpy"]).max() <= 1  # softmax rounding only


def test_inference_batch_is_one_on_cpu_unless_configured(tiny_run):
    """`infer.batch_size: null` (the default) -> 1 window per pass on a CPU, 8 on a GPU."""
    from rsseg.trained.checkpoint import load_predictor
    from rsseg.config import load_config
    from rsseg.runtime import inference_batch_size

    assert inference_batch_size(None, "cpu") == 1 and inference_batch_size(None, "cuda") == 8
    assert inference_batch_size(3, "cpu") == 3
    cpu = load_predictor(tiny_run.best_checkpoint, device=torch.device("cpu"))
    assert PredictOptions.build(cpu).batch_size == 1
    cfg = load_config(tiny_run.run_dir / "config.yaml", ["infer.batch_size=5"])
    assert PredictOptions.build(load_predictor(tiny_run.best_checkpoint, config=cfg, device=torch.device("cpu"))).batch_size == 5
    assert PredictOptions.build(cpu, batch_size=3).batch_size == 3


def test_class_index_ops_agree_with_argmax_on_ties_and_nan():
    """Both engines' class maps are argmax's: the first maximum wins a tie and a NaN wins."""
    from rsseg.infer.engine import NumpyOps, TorchOps

    x = torch.randint(0, 3, (2, K, 40, 30), generator=torch.Generator().manual_seed(0)).float()
    x[0, 2, :5, :5] = float("nan")
    x[1, 3, 7, 7] = x[1, 1, 7, 7] = float("nan")
    expected = x.argmax(dim=1).numpy()
    for t in (x, x.contiguous(memory_format=torch.channels_last), x[..., 3:-3, 5:-5]):
        want = expected[..., 3:-3, 5:-5] if t.shape[-1] != x.shape[-1] else expected
        np.testing.assert_array_equal(TorchOps().classes(t), want)
        np.testing.assert_array_equal(NumpyOps.classes(t.numpy()), want)
