"""Shared helpers of the inference tests: a tiny exact model, images, GeoTIFF writing."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.crs import CRS
from rasterio.transform import Affine
from torch import nn

from rsseg.classes import ClassTable
from rsseg.config.infer import InferConfig
from rsseg.trained.predictor import Predictor

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "infer.py"
K = 4
CLASSES = ClassTable(
    names=("a", "b", "c", "d"),
    colors=((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)),
)
UTM_TRANSFORM = Affine(0.3, 0.0, 512345.25, 0.0, -0.3, 5123456.75)


class Float64(nn.Module):
    """Runs the wrapped model in float64 so batched and single-window runs agree exactly."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.double())


def make_net(bands: int = 3, kernel: int = 3) -> nn.Sequential:
    """Receptive field radius 3 with 3x3 kernels: smaller than a 16 px margin."""
    torch.manual_seed(0)
    pad = kernel // 2
    net = nn.Sequential(
        nn.Conv2d(bands, 8, kernel, padding=pad), nn.ReLU(),
        nn.Conv2d(8, 8, kernel, padding=pad), nn.ReLU(),
        nn.Conv2d(8, 8, kernel, padding=pad), nn.ReLU(),
        nn.Conv2d(8, K, 1),
    )
    with torch.no_grad():  # zero biases so the predicted classes vary across the scene
        for layer in net:
            if isinstance(layer, nn.Conv2d):
                layer.bias.zero_()
    return net


def make_predictor(window=256, keep=224, batch_size=4, mean=(100.0, 110.0, 120.0), std=None,
                   bands=None, kernel=3, in_bands=None):
    in_bands = in_bands or len(mean)
    return Predictor(
        model=Float64(make_net(in_bands, kernel)),
        classes=CLASSES,
        mean=list(mean),
        std=list(std or (50.0,) * len(mean)),
        bands=bands,
        defaults=InferConfig(window=window, keep=keep, batch_size=batch_size),
        precision="32",
        channels_last=False,
    )


def _padded_scene(predictor: Predictor, image: np.ndarray):
    """Margin, the whole normalised scene reflect-padded to whole kept tiles, its size, tiles."""
    win, keep = predictor.defaults.window, predictor.defaults.keep
    m = (win - keep) // 2
    x = predictor.select_and_normalize(image)
    _, h, w = x.shape
    nh, nw = math.ceil(h / keep), math.ceil(w / keep)
    x = np.pad(x, ((0, 0), (m, nh * keep - h + m), (m, nw * keep - w + m)), mode="reflect")
    return m, x, (h, w), (nh, nw)


def reference_stitch(predictor: Predictor, image: np.ndarray) -> np.ndarray:
    """Straightforward Border Correction: whole scene padded, one window at a time."""
    win, keep = predictor.defaults.window, predictor.defaults.keep
    m, x, (h, w), (nh, nw) = _padded_scene(predictor, image)
    out = np.zeros((nh * keep, nw * keep), dtype=np.uint8)
    with torch.no_grad():
        for i in range(nh):
            for j in range(nw):
                tile = x[:, i * keep : i * keep + win, j * keep : j * keep + win]
                logits = predictor.model(torch.from_numpy(np.ascontiguousarray(tile))[None])
                pred = logits[0].argmax(0).numpy().astype(np.uint8)
                out[i * keep : (i + 1) * keep, j * keep : (j + 1) * keep] = pred[m : m + keep, m : m + keep]
    return out[:h, :w]


def seed_stitch(predictor: Predictor, image: np.ndarray) -> np.ndarray:
    """The bench's own seed procedure (``benchmarks/infer.py``, ``seed_classes``), so the
    test checks exactly what ``make bench-infer`` runs as (a)."""
    spec = importlib.util.spec_from_file_location("bench_infer", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.seed_classes(predictor, image, predictor.defaults.window, predictor.defaults.keep)


def bit_classes(logits: torch.Tensor, k: int = K) -> torch.Tensor:
    """One-hot scores (B, k, h, w) of a class drawn from the low bits of float32 ``logits``:
    a change of one unit in the last place of any logit changes the class, so equal maps
    mean bitwise equal logits (an argmax alone hides nearly all rounding differences)."""
    v = logits.float().contiguous().view(torch.int32).to(torch.int64).sum(dim=1)
    idx = (v ^ (v >> 3) ^ (v >> 7)) % k
    return torch.nn.functional.one_hot(idx, k).permute(0, 3, 1, 2).float()


class BitClasses(nn.Module):
    """A network followed by ``bit_classes``."""

    def __init__(self, net: nn.Module, k: int = K) -> None:
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bit_classes(self.net(x), self.k)


def whole_scene(predictor: Predictor, image: np.ndarray, pad: int = 8) -> np.ndarray:
    """One forward pass over the reflect-padded scene: what seamless tiling must give."""
    x = np.pad(predictor.select_and_normalize(image), ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    with torch.no_grad():
        out = predictor.model(torch.from_numpy(x)[None])[0].argmax(0).numpy()
    return out[pad:-pad, pad:-pad].astype(np.uint8)


def random_image(h, w, dtype=np.uint8, seed=1, bands=3):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(yy / 17.0 + c) * np.cos(xx / 23.0 - c) for c in range(bands)])
    img = 120 + 80 * base + rng.normal(0, 20, size=(bands, h, w))
    return np.clip(img, 0, 255).astype(dtype)


def write_geotiff(path, image, nodata=None, crs="EPSG:32633", transform=UTM_TRANSFORM):
    with rasterio.open(
        path, "w", driver="GTiff", width=image.shape[2], height=image.shape[1],
        count=image.shape[0], dtype=image.dtype, crs=CRS.from_user_input(crs) if crs else None,
        transform=transform, nodata=nodata,
    ) as dst:
        dst.write(image)
    return path
