"""Augmentations from `data.augment`: alignment of image and mask, band counts, seeds, errors."""

from __future__ import annotations

import pickle
import random

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from pydantic import BaseModel, Field, ValidationError
from torch.utils.data import DataLoader, Dataset

from rsseg.classes import IGNORE_INDEX
from rsseg.config.augment import AugmentConfig
from rsseg.config.base import Section
from rsseg.data.augment import build_augment

T = 64
FULL = {
    "d4": True,
    "scale": {"p": 1.0},
    "color_jitter": {"p": 1.0},
    "blur": {"p": 1.0},
    "noise": {"p": 1.0},
}


def _chip(bands: int, seed: int = 0, block: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A blocky mask (classes 0..4) and an image whose band k is ``mask + k``, so any
    misregistration between bands, or between image and mask, shows up exactly."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 5, (T // block, T // block), dtype=np.uint8)
    mask = np.kron(coarse, np.ones((block, block), dtype=np.uint8))
    image = np.stack([mask.astype(np.float32) + k for k in range(bands)])
    return image, mask


def _run(aug, image, mask, seed):
    torch.manual_seed(seed)
    return aug(image, mask)


def test_defaults_are_legacy_d4_only() -> None:
    cfg = AugmentConfig()
    assert cfg.d4 and cfg.enabled
    assert all(s.p == 0 for s in (cfg.scale, cfg.color_jitter, cfg.blur, cfg.noise))
    assert AugmentConfig.model_validate(True) == cfg
    assert AugmentConfig.model_validate(False) == AugmentConfig(d4=False)
    assert not AugmentConfig.model_validate(False).enabled
    assert build_augment(AugmentConfig(d4=False), 3) is None
    assert build_augment(AugmentConfig.model_validate(False), 10) is None


def test_legacy_bool_inside_a_parent_section() -> None:
    class Parent(Section):
        augment: AugmentConfig = Field(default_factory=AugmentConfig, description="x")

    assert Parent.model_validate({"augment": False}).augment.d4 is False
    assert Parent.model_validate({"augment": True}).augment == AugmentConfig()
    assert Parent.model_validate({"augment": {"blur": {"p": 0.5}}}).augment.blur.p == 0.5
    parent = Parent()
    parent.augment = False  # validate_assignment goes through the same path
    assert parent.augment.d4 is False


def test_every_field_has_a_description() -> None:
    def walk(model: type[BaseModel]) -> None:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name}"
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                walk(field.annotation)

    walk(AugmentConfig)


def test_d4_keeps_image_and_mask_aligned_and_covers_the_group() -> None:
    image, mask = _chip(4)
    aug = build_augment(AugmentConfig(), 4)
    seen = set()
    for seed in range(40):
        img, msk = _run(aug, image, mask, seed)
        assert img.dtype == np.float32 and msk.dtype == np.uint8
        assert img.flags.c_contiguous and msk.flags.c_contiguous
        for k in range(4):
            np.testing.assert_array_equal(img[k], msk.astype(np.float32) + k)
        seen.add(msk.tobytes())
    candidates = {np.rot90(m, r).tobytes() for m in (mask, mask.T) for r in range(4)}
    assert seen == candidates  # all 8 symmetries, and nothing else


def _agreement(img0: np.ndarray, msk: np.ndarray, dy: int, dx: int) -> float:
    """Share of labelled pixels where band 0 matches the mask moved by (dy, dx)."""
    moved = np.roll(msk, (dy, dx), (0, 1))
    valid = (msk != IGNORE_INDEX) & (moved != IGNORE_INDEX)
    return float((np.abs(img0[valid] - moved[valid]) < 0.5).mean())


@pytest.mark.parametrize("zoom", [(0.5, 0.7), (0.77, 0.77), (1.3, 1.3), (1.4, 2.0)])
def test_scale_keeps_alignment_and_pads_mask_with_ignore(zoom) -> None:
    image, mask = _chip(3, block=16)
    aug = build_augment(AugmentConfig(d4=False, scale={"p": 1.0, "range": zoom}), 3)
    for seed in range(5):
        img, msk = _run(aug, image, mask, seed)
        assert img.shape == image.shape and msk.shape == mask.shape
        pad = msk == IGNORE_INDEX
        assert pad.any() == (zoom[1] < 1)  # shrinking pads, enlarging only crops
        assert (img[:, pad] == 0).all()
        assert set(np.unique(msk[~pad])) <= set(np.unique(mask))  # nearest: no new labels
        np.testing.assert_allclose(img[2][~pad] - img[0][~pad], 2.0, atol=1e-5)  # bands registered
        # Interpolated image and nearest mask differ only on block edges, and any one-pixel
        # misregistration of the mask would match worse than none.
        here = _agreement(img[0], msk, 0, 0)
        assert here > 0.85
        for dy, dx in [(-1, 0), (1, 0), (0, -1), (0, 1)]:
            assert here > _agreement(img[0], msk, dy, dx) + 0.005
        if pad.any():
            rows, cols = np.nonzero(~pad)
            assert (~pad)[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()  # a frame


def test_blur_never_touches_the_mask_and_does_not_clip() -> None:
    rng = np.random.default_rng(1)
    image = (rng.standard_normal((3, T, T)) * 3).astype(np.float32)
    mask = rng.integers(0, 6, (T, T), dtype=np.uint8)
    mask[:4] = IGNORE_INDEX
    aug = build_augment(AugmentConfig(d4=False, blur={"p": 1.0, "sigma": [1.0, 2.0]}), 3)
    img, msk = _run(aug, image, mask, 0)
    np.testing.assert_array_equal(msk, mask)
    assert img.std() < image.std()  # smoothed
    assert img.min() < -1 and img.max() > 1  # normalised values are not clipped to [0, 1]
    np.testing.assert_allclose(img.mean(axis=(1, 2)), image.mean(axis=(1, 2)), atol=0.1)


def test_noise_and_jitter_leave_the_mask_alone() -> None:
    image, mask = _chip(10)
    cfg = AugmentConfig(d4=False, noise={"p": 1.0}, color_jitter={"p": 1.0})
    img, msk = _run(build_augment(cfg, 10), image, mask, 3)
    np.testing.assert_array_equal(msk, mask)
    assert not np.allclose(img, image)


@pytest.mark.parametrize("bands", [1, 3, 4, 10])
def test_all_options_work_for_any_band_count(bands: int) -> None:
    image, mask = _chip(bands)
    cfg = AugmentConfig.model_validate(FULL)
    aug = build_augment(cfg, bands)
    for seed in range(4):
        img, msk = _run(aug, image, mask, seed)
        assert img.shape == (bands, T, T) and img.dtype == np.float32 and img.flags.c_contiguous
        assert msk.shape == (T, T) and msk.dtype == np.uint8 and msk.flags.c_contiguous
        assert np.isfinite(img).all()


def test_brightness_contrast_in_normalised_units() -> None:
    rng = np.random.default_rng(2)
    image = rng.standard_normal((10, T, T)).astype(np.float32)
    mask = np.zeros((T, T), np.uint8)
    shared = build_augment(AugmentConfig(d4=False, color_jitter={"p": 1, "brightness": 0.5, "contrast": 0}), 10)
    delta = _run(shared, image, mask, 0)[0] - image
    assert np.ptp(delta) < 1e-5 and abs(delta.flat[0]) <= 0.5  # one shift, all pixels and bands
    per_band = build_augment(
        AugmentConfig(d4=False, color_jitter={"p": 1, "brightness": 0.5, "contrast": 0, "per_band": True}), 10
    )
    delta = _run(per_band, image, mask, 0)[0] - image
    assert np.ptp(delta, axis=(1, 2)).max() < 1e-5 and np.ptp(delta[:, 0, 0]) > 1e-3
    contrast = build_augment(AugmentConfig(d4=False, color_jitter={"p": 1, "brightness": 0, "contrast": 0.5}), 10)
    out = _run(contrast, image, mask, 0)[0]
    np.testing.assert_allclose(out.mean(axis=(1, 2)), image.mean(axis=(1, 2)), atol=1e-4)  # about the mean
    ratio = out.std(axis=(1, 2)) / image.std(axis=(1, 2))
    assert np.ptp(ratio) < 1e-3 and 0.5 <= ratio[0] <= 1.5


def test_saturation_hue_on_three_bands_keep_grey_and_skip_otherwise() -> None:
    rng = np.random.default_rng(3)
    image = rng.standard_normal((3, T, T)).astype(np.float32)
    mask = np.zeros((T, T), np.uint8)
    cfg = AugmentConfig(d4=False, color_jitter={"p": 1, "brightness": 0, "contrast": 0, "hue": 0.5})
    out = _run(build_augment(cfg, 3), image, mask, 0)[0]
    assert not np.allclose(out, image)
    np.testing.assert_allclose(out.mean(axis=0), image.mean(axis=0), atol=1e-5)  # grey axis fixed
    chroma = np.linalg.norm(image - image.mean(axis=0), axis=0)
    np.testing.assert_allclose(np.linalg.norm(out - out.mean(axis=0), axis=0), chroma, atol=1e-4)
    with pytest.warns(UserWarning, match="3 bands"):
        aug4 = build_augment(cfg, 4)
    image4 = rng.standard_normal((4, T, T)).astype(np.float32)
    np.testing.assert_allclose(_run(aug4, image4, mask, 0)[0], image4, atol=1e-5)


@pytest.fixture
def _restore_lightning_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """seed_everything leaves PL_GLOBAL_SEED / PL_SEED_WORKERS set; keep them out of other tests."""
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    monkeypatch.delenv("PL_SEED_WORKERS", raising=False)


@pytest.mark.usefixtures("_restore_lightning_env")
def test_same_seed_same_chips_and_global_numpy_random_is_irrelevant() -> None:
    image, mask = _chip(4)
    aug = build_augment(AugmentConfig.model_validate(FULL), 4)

    def draw(seed: int, noise_seed: int):
        L.seed_everything(seed, verbose=False)
        np.random.seed(noise_seed)
        random.seed(noise_seed)
        return [aug(image, mask) for _ in range(3)]

    a, b, c = draw(5, 0), draw(5, 99), draw(6, 0)
    for (ia, ma), (ib, mb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(ma, mb)
    assert not all(np.array_equal(ia, ic) for (ia, _), (ic, _) in zip(a, c, strict=True))
    assert not np.array_equal(a[0][0], a[1][0])  # successive calls differ


class _Repeat(Dataset):
    def __init__(self, aug, n: int = 8) -> None:
        self.aug, self.n = aug, n
        self.image, self.mask = _chip(3)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.aug(self.image, self.mask)


@pytest.mark.usefixtures("_restore_lightning_env")
def test_dataloader_workers_differ_and_runs_repeat() -> None:
    aug = build_augment(AugmentConfig(d4=False, noise={"p": 1.0}), 3)

    def epoch() -> torch.Tensor:
        L.seed_everything(11, workers=True, verbose=False)
        loader = DataLoader(_Repeat(aug), batch_size=1, num_workers=2)
        return torch.cat([img for img, _ in loader])

    first, second = epoch(), epoch()
    assert torch.equal(first, second)
    # items 0 and 1 come from different workers: a copied albumentations state would repeat
    assert len({x.numpy().tobytes() for x in first}) == len(first)


def test_pickles_for_spawned_workers() -> None:
    image, mask = _chip(3)
    aug = build_augment(AugmentConfig.model_validate(FULL), 3)
    clone = pickle.loads(pickle.dumps(aug))
    for x, y in zip(_run(aug, image, mask, 4), _run(clone, image, mask, 4), strict=True):
        np.testing.assert_array_equal(x, y)


def test_bad_shapes_are_rejected() -> None:
    aug = build_augment(AugmentConfig(), 3)
    with pytest.raises(ValueError, match="square"):
        aug(np.zeros((3, 8, 16), np.float32), np.zeros((8, 16), np.uint8))
    with pytest.raises(ValueError, match="expected image"):
        aug(np.zeros((8, 8), np.float32), np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="num_bands"):
        build_augment(AugmentConfig(), 0)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("scale: {p: 0.5, range: [1.25, 0.75]}", "low <= high"),
        ("scale: {range: [0, 1.2]}", "must be > 0"),
        ("blur: {sigma: [2, 1]}", "low <= high"),
        ("blur: {p: 1.5}", "less than or equal to 1"),
        ("noise: {std: [-0.1, 0.1]}", "must be >= 0"),
        ("color_jitter: {hue: 0.7}", "less than or equal to 0.5"),
        ("color_jitter: {contrast: -1}", "greater than or equal to 0"),
        ("scale: {range: [0.5]}", "scale.range"),
        ("flips: true", "Extra inputs are not permitted"),
        ("d4: maybe", "valid boolean"),
    ],
)
def test_invalid_yaml_values_give_clear_errors(text: str, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        AugmentConfig.model_validate(yaml.safe_load(text))
