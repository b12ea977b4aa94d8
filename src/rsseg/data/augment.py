"""Training-chip augmentations built from ``data.augment`` on albumentations.

Chips arrive *normalised* (float32, per band mean 0 and std 1) with any number of bands.
albumentations' own colour, noise and blur transforms assume uint8 or [0, 1] RGB and clip
float output to [0, 1] (``GaussianBlur`` does, silently), and OpenCV's resize rejects more
than 4 channels for some modes, so those steps are small albumentations transforms here:
they still draw every random number from albumentations' generators, and nothing clips.

Meaning in normalised space (units are band standard deviations):

* brightness: ``x + d``, ``d ~ U(-b, b)``; contrast: ``(x - m) * a + m``, ``a ~ U(1-c, 1+c)``,
  ``m`` the chip's mean of that band. One draw for all bands, or one per band (``per_band``).
  Both apply to any band count.
* saturation / hue: only for 3-band images (the bands are taken as colour channels);
  saturation scales the distance to the per-pixel band mean (the grey axis) and hue rotates
  around that axis by ``U(-h, h)`` turns. With another band count they are skipped (with a warning at build time).
* noise: ``x + N(0, s^2)`` per pixel and band, ``s ~ U(low, high)``.

Order: colour jitter, blur, noise, rescale (so its padding stays exactly 0, the band mean,
in the image and ``IGNORE_INDEX`` in the mask), then D4. D4 is a numpy rot90/flip on the
(C, H, W) chip: it is the default, and albumentations' (H, W, C) layout would make it slower.

Randomness: albumentations 2 keeps its own generators, unaffected by global seeds, and a
copy forked into each DataLoader worker would repeat the same stream. So every call reseeds
them from one draw of torch's global generator, which training seeds for every chip from
(seed, epoch, position) (``rsseg.data.seeding``): a fixed seed gives identical chips, in any
worker and after a resume.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.augmentations.geometric import functional as fgeometric

from rsseg.classes import IGNORE_INDEX
from rsseg.config.augment import AugmentConfig

_CV_MAX_CHANNELS = 512  # OpenCV CV_CN_MAX: more bands take the slower numpy path
AugmentFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class _Blur(A.ImageOnlyTransform):
    """Gaussian blur, sigma ~ U(lo, hi), kernel ~ 6 sigma; unlike ``A.GaussianBlur`` no clipping."""

    def __init__(self, sigma: tuple[float, float], p: float) -> None:
        super().__init__(p=p)
        self.sigma = sigma

    def get_params(self) -> dict[str, Any]:
        return {"sigma": self.py_random.uniform(*self.sigma)}

    def apply(self, img: np.ndarray, sigma: float = 1.0, **params: Any) -> np.ndarray:
        radius = max(1, math.ceil(3 * sigma))
        kernel = cv2.getGaussianKernel(2 * radius + 1, sigma).astype(np.float32)
        return cv2.sepFilter2D(img, -1, kernel, kernel, borderType=cv2.BORDER_REFLECT_101).reshape(img.shape)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("sigma",)


class _Rescale(A.DualTransform):
    """Zoom by ``s ~ U(lo, hi)`` then crop/pad back to the input size at a random offset.

    Image: linear (area when shrinking), padded with 0. Mask: centre-aligned nearest
    (``INTER_NEAREST_EXACT``, so labels stay on the pixels they describe), padded with ignore.
    """

    def __init__(self, scale: tuple[float, float], p: float) -> None:
        super().__init__(p=p)
        self.scale = scale

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        s = self.py_random.uniform(*self.scale)
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        # Origin of the output window in the zoomed chip; negative means padding on that side.
        top = self.py_random.randint(min(0, nh - h), max(0, nh - h))
        left = self.py_random.randint(min(0, nw - w), max(0, nw - w))
        return {"zoom": s, "zoom_size": (nh, nw), "origin": (top, left)}

    @staticmethod
    def _window(arr: np.ndarray, origin: tuple[int, int], shape: tuple[int, int], fill: float) -> np.ndarray:
        (top, left), (h, w) = origin, shape
        out = np.full((h, w, *arr.shape[2:]), fill, dtype=arr.dtype)
        r0, c0 = max(top, 0), max(left, 0)
        r1, c1 = min(top + h, arr.shape[0]), min(left + w, arr.shape[1])
        out[r0 - top : r1 - top, c0 - left : c1 - left] = arr[r0:r1, c0:c1]
        return out

    def apply(self, img: np.ndarray, zoom: float = 1.0, zoom_size: tuple[int, int] = (0, 0),
              origin: tuple[int, int] = (0, 0), **params: Any) -> np.ndarray:
        interp = cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR
        resized = fgeometric.resize(img, zoom_size, interp).reshape(*zoom_size, *img.shape[2:])
        return self._window(resized, origin, img.shape[:2], 0.0)

    def apply_to_mask(self, mask: np.ndarray, zoom_size: tuple[int, int] = (0, 0),
                      origin: tuple[int, int] = (0, 0), **params: Any) -> np.ndarray:
        resized = fgeometric.resize(mask, zoom_size, cv2.INTER_NEAREST_EXACT).reshape(*zoom_size, *mask.shape[2:])
        return self._window(resized, origin, mask.shape[:2], IGNORE_INDEX)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale",)


def _band_means(img: np.ndarray) -> np.ndarray:
    """Per-band mean of an (H, W, C) image; much faster than ``img.mean(axis=(0, 1))``."""
    flat = img.reshape(-1, img.shape[2] if img.ndim == 3 else 1)
    return cv2.reduce(flat, 0, cv2.REDUCE_AVG, dtype=cv2.CV_32F)[0]  # error ~1e-5


def _hue_rotation(angle: float) -> np.ndarray:
    """3x3 rotation by ``angle`` radians about the grey axis (1, 1, 1) / sqrt(3) (Rodrigues)."""
    k = np.full(3, 1 / math.sqrt(3))
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.cos(angle) * np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * np.outer(k, k)


class _ColorJitter(A.ImageOnlyTransform):
    """Brightness/contrast on any band count, saturation/hue on 3 bands (see module docstring)."""

    def __init__(self, brightness: float, contrast: float, saturation: float, hue: float,
                 per_band: bool, p: float) -> None:
        super().__init__(p=p)
        self.brightness, self.contrast = brightness, contrast
        self.saturation, self.hue, self.per_band = saturation, hue, per_band

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        bands = params["shape"][2] if len(params["shape"]) == 3 else 1
        n = bands if self.per_band else 1
        rng = self.random_generator
        out = {
            "shift": rng.uniform(-self.brightness, self.brightness, n).astype(np.float32),
            "factor": rng.uniform(1 - self.contrast, 1 + self.contrast, n).astype(np.float32),
            "sat": 1.0,
            "hue_turns": 0.0,
        }
        if bands == 3:
            out["sat"] = rng.uniform(1 - self.saturation, 1 + self.saturation)
            out["hue_turns"] = rng.uniform(-self.hue, self.hue)
        return out

    def apply(self, img: np.ndarray, shift: Any = 0.0, factor: Any = 1.0, sat: float = 1.0,
              hue_turns: float = 0.0, **params: Any) -> np.ndarray:
        # (x - m) * a + m + d, folded into one multiply-add per pixel
        mean = _band_means(img) if self.contrast > 0 else 0.0
        x = img * factor + (mean * (1 - factor) + shift).astype(np.float32)
        if img.ndim == 3 and img.shape[2] == 3:
            if sat != 1.0:
                grey = (x[..., 0:1] + x[..., 1:2] + x[..., 2:3]) / 3
                x = grey + (x - grey) * sat
            if hue_turns != 0.0:
                x = x @ _hue_rotation(2 * math.pi * hue_turns).T.astype(np.float32)
        return x.astype(np.float32, copy=False)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness", "contrast", "saturation", "hue", "per_band")


class _Noise(A.ImageOnlyTransform):
    """Additive Gaussian noise, std ~ U(lo, hi) in band std units, no clipping."""

    def __init__(self, std: tuple[float, float], p: float) -> None:
        super().__init__(p=p)
        self.std = std

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        sigma = self.py_random.uniform(*self.std)
        noise = self.random_generator.standard_normal(params["shape"], dtype=np.float32) * np.float32(sigma)
        return {"noise": noise}

    def apply(self, img: np.ndarray, noise: np.ndarray | None = None, **params: Any) -> np.ndarray:
        return img if noise is None else img + noise.reshape(img.shape)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("std",)


def _to_hwc(image: np.ndarray) -> np.ndarray:
    """(C, H, W) -> contiguous (H, W, C); cv2.merge is about twice as fast as a numpy transpose."""
    if image.shape[0] == 1 or image.shape[0] > _CV_MAX_CHANNELS:
        return np.ascontiguousarray(image.transpose(1, 2, 0))
    return cv2.merge(list(image))


def _to_chw(image: np.ndarray) -> np.ndarray:
    """(H, W, C) -> contiguous float32 (C, H, W), splitting straight into the output planes."""
    image = image.astype(np.float32, copy=False)
    if image.shape[2] == 1 or image.shape[2] > _CV_MAX_CHANNELS:
        return np.ascontiguousarray(image.transpose(2, 0, 1))
    out = np.empty((image.shape[2], *image.shape[:2]), dtype=np.float32)
    cv2.split(np.ascontiguousarray(image), list(out))
    return out


class Augment:
    """``(image (C, H, W) float32, mask (H, W) uint8) -> same``, drawing from torch's RNG.

    A plain class (not a closure) so DataLoader workers can pickle it under ``spawn``.
    Unchanged arrays may be returned as they came in.
    """

    def __init__(self, transforms: list[A.BasicTransform], d4: bool) -> None:
        self.compose = A.Compose(transforms, p=1.0) if transforms else None
        self.d4 = d4

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if image.ndim != 3 or mask.shape != image.shape[1:]:
            raise ValueError(f"expected image (C, H, W) and mask (H, W), got {image.shape} and {mask.shape}")
        if self.d4 and mask.shape[0] != mask.shape[1]:
            raise ValueError(f"d4 needs square chips (a transpose swaps H and W), got {mask.shape}")
        seed = int(torch.randint(0, 2**62, ()))
        py_random = random.Random(seed)
        if self.compose is not None:
            self.compose.set_random_state(np.random.default_rng(seed), py_random)
            out = self.compose(image=_to_hwc(image.astype(np.float32, copy=False)), mask=mask)
            image, mask = _to_chw(out["image"].reshape(*mask.shape, image.shape[0])), out["mask"]
        if self.d4:
            # The 8 symmetries of the square, uniformly (as A.SquareSymmetry), applied here to the
            # (C, H, W) array: in albumentations' (H, W, C) layout the transposes cost ~5x more.
            k, flip = py_random.randrange(4), py_random.random() < 0.5
            image, mask = np.rot90(image, k, axes=(1, 2)), np.rot90(mask, k)
            if flip:
                image, mask = image[:, :, ::-1], mask[:, ::-1]
        return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(mask, dtype=np.uint8)


def build_augment(cfg: AugmentConfig, num_bands: int) -> AugmentFn | None:
    """The training-chip augmentation for ``cfg``, or None when it would never change a chip."""
    if num_bands < 1:
        raise ValueError(f"num_bands must be >= 1, got {num_bands}")
    steps: list[A.BasicTransform] = []
    jit = cfg.color_jitter
    if jit.p > 0:
        if num_bands != 3 and (jit.saturation > 0 or jit.hue > 0):
            warnings.warn(
                f"data.augment.color_jitter: saturation/hue need 3 bands; the images have {num_bands}, "
                "so only brightness/contrast are applied",
                stacklevel=2,
            )
        steps.append(_ColorJitter(jit.brightness, jit.contrast, jit.saturation, jit.hue, jit.per_band, p=jit.p))
    if cfg.blur.p > 0:
        steps.append(_Blur(cfg.blur.sigma, p=cfg.blur.p))
    if cfg.noise.p > 0:
        steps.append(_Noise(cfg.noise.std, p=cfg.noise.p))
    if cfg.scale.p > 0:
        steps.append(_Rescale(cfg.scale.range, p=cfg.scale.p))
    return Augment(steps, cfg.d4) if steps or cfg.d4 else None
