"""Losses, class weights, loss config and class pixel counts.

Expected values are computed by hand (plain ``math``) on a 4-pixel, 3-class example whose
logits are ``log(p)``, so the softmax is exactly the chosen probabilities ``p``.
"""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

from rsseg.classes import IGNORE_INDEX
from rsseg.config import LossConfig, load_config
from rsseg.data.priors import class_pixel_counts
from rsseg.errors import RsSegError
from rsseg.training.losses import LOSSES, WeightedSum, build_loss, class_weights_from_counts

NAMES = ["ce", "focal", "dice", "jaccard", "lovasz"]

# 4 pixels in a row (B=1, H=1, W=4), 3 classes; the last pixel is ignored
P = [[0.5, 0.25, 0.25], [0.1, 0.7, 0.2], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]]
T = [0, 1, 1, IGNORE_INDEX]


def example() -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor(P, dtype=torch.float64).log().T.reshape(1, 3, 1, 4)
    return logits.requires_grad_(), torch.tensor(T).reshape(1, 1, 4)


def loss_of(**kw) -> nn.Module:
    return build_loss(LossConfig(**kw), 3)


def value(**kw) -> float:
    logits, target = example()
    return loss_of(**kw)(logits, target).item()


# ----------------------------------------------------------------- hand-computed values


def test_ce_hand_computed():
    assert value(name="ce") == pytest.approx(-(math.log(0.5) + math.log(0.7) + math.log(0.2)) / 3)


def test_weighted_ce_hand_computed():
    # PyTorch's convention: sum_i w_ti * l_i / sum_i w_ti over labelled pixels
    expected = -(1 * math.log(0.5) + 2 * math.log(0.7) + 2 * math.log(0.2)) / (1 + 2 + 2)
    assert value(name="ce", class_weights=[1.0, 2.0, 0.5]) == pytest.approx(expected)


def test_focal_hand_computed():
    fl = [(1 - p) ** 2 * -math.log(p) for p in (0.5, 0.7, 0.2)]
    assert value(name="focal") == pytest.approx(sum(fl) / 3)
    assert value(name="focal", alpha=0.25) == pytest.approx(0.25 * sum(fl) / 3)
    fl_half = [(1 - p) ** 0.5 * -math.log(p) for p in (0.5, 0.7, 0.2)]
    w = [1.0, 2.0, 2.0]  # class weights [1, 2, 0.5] at targets 0, 1, 1
    expected = sum(wi * f for wi, f in zip(w, fl_half)) / sum(w)
    assert value(name="focal", gamma=0.5, class_weights=[1.0, 2.0, 0.5]) == pytest.approx(expected)


def test_dice_and_jaccard_hand_computed():
    # labelled pixels 0..2; class 2 is absent from the target so it does not count
    inter0, psum0, tsum0 = 0.5, 0.5 + 0.1 + 0.2, 1
    inter1, psum1, tsum1 = 0.7 + 0.2, 0.25 + 0.7 + 0.2, 2
    dice = [2 * inter0 / (psum0 + tsum0), 2 * inter1 / (psum1 + tsum1)]
    assert value(name="dice") == pytest.approx(1 - sum(dice) / 2)
    jac = [inter0 / (psum0 + tsum0 - inter0), inter1 / (psum1 + tsum1 - inter1)]
    assert value(name="jaccard") == pytest.approx(1 - sum(jac) / 2)
    s = 1.0
    dice_s = [(2 * inter0 + s) / (psum0 + tsum0 + s), (2 * inter1 + s) / (psum1 + tsum1 + s)]
    assert value(name="dice", smooth=s) == pytest.approx(1 - sum(dice_s) / 2)


def test_lovasz_hand_computed():
    # class 0: fg (1,0,0), errors |fg - p0| = (.5,.1,.2); sorted px0,px2,px1; the Jaccard loss
    #   of {px0}, {px0,px2}, all = 1, 1, 1 -> increments 1, 0, 0 -> 0.5
    # class 1: fg (0,1,1), errors (.25,.3,.8); sorted px2,px1,px0; Jaccard loss of
    #   {px2}: 1 - 1/2 = .5, {px2,px1}: 1, all: 1 -> increments .5, .5, 0 -> .8*.5 + .3*.5 = .55
    # class 2 absent -> not averaged
    assert value(name="lovasz") == pytest.approx((0.5 + 0.55) / 2)


def test_ce_matches_torch_with_weights_and_smoothing():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 6)
    target = torch.randint(0, 3, (2, 5, 6))
    target[0, :2] = IGNORE_INDEX
    w = [0.5, 2.0, 1.0]
    ours = loss_of(name="ce", class_weights=w, label_smoothing=0.1)(logits, target)
    ref = nn.CrossEntropyLoss(torch.tensor(w), ignore_index=IGNORE_INDEX, label_smoothing=0.1)
    assert ours.item() == pytest.approx(ref(logits, target).item(), rel=1e-6)


def test_focal_with_gamma_zero_is_ce():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 5, 5)
    target = torch.randint(0, 4, (2, 5, 5))
    target[1, 3:] = IGNORE_INDEX
    w = [1.0, 0.5, 3.0, 0.0]
    ce = build_loss(LossConfig(name="ce", class_weights=w), 4)
    focal = build_loss(LossConfig(name="focal", gamma=0.0, class_weights=w), 4)
    assert focal(logits, target).item() == pytest.approx(ce(logits, target).item(), rel=1e-6)


# ----------------------------------------------------------------- ignore_index


def random_batch(seed: int, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, k, 4, 5, generator=g, dtype=torch.float64)
    target = torch.randint(0, k, (2, 4, 5), generator=g)
    target[:, :, -1] = IGNORE_INDEX  # last column ignored
    target[0, 0, 0] = IGNORE_INDEX
    return logits, target


def value_and_grad(loss: nn.Module, logits: torch.Tensor, target: torch.Tensor):
    x = logits.clone().requires_grad_()
    out = loss(x, target)
    out.backward()
    return out.detach(), x.grad


ALL_CONFIGS = [
    dict(name="ce"),
    dict(name="ce", class_weights=[0.2, 1.0, 3.0], label_smoothing=0.1),
    dict(name="focal"),
    dict(name="focal", gamma=0.5, alpha=0.25, class_weights=[0.2, 1.0, 3.0]),
    dict(name="dice"),
    dict(name="dice", smooth=1.0),
    dict(name="jaccard"),
    dict(name="lovasz"),
    dict(terms=[{"name": n, "weight": 0.5 + i} for i, n in enumerate(NAMES)]),
]


@pytest.mark.parametrize("kw", ALL_CONFIGS, ids=lambda kw: str(kw.get("name", "sum")))
def test_ignored_pixels_change_nothing(kw):
    loss = build_loss(LossConfig(**kw), 3)
    logits, target = random_batch(2)
    ignored = (target == IGNORE_INDEX).unsqueeze(1).expand_as(logits)
    v1, g1 = value_and_grad(loss, logits, target)
    noisy = logits.clone()
    noisy[ignored] = 50 * torch.randn(int(ignored.sum()), dtype=torch.float64)
    v2, g2 = value_and_grad(loss, noisy, target)
    assert torch.isfinite(v1) and torch.isfinite(g1).all()
    assert v1.item() == pytest.approx(v2.item(), rel=1e-12, abs=1e-12)
    assert torch.equal(g1[ignored], torch.zeros_like(g1[ignored]))
    assert torch.allclose(g1, g2, rtol=1e-12, atol=1e-12)
    # same as never having had the ignored column (pixel (0,0,0) stays ignored)
    v3, _ = value_and_grad(loss, logits[..., :-1], target[..., :-1])
    assert v1.item() == pytest.approx(v3.item(), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("kw", ALL_CONFIGS, ids=lambda kw: str(kw.get("name", "sum")))
def test_all_ignored_batch_gives_zero(kw):
    loss = build_loss(LossConfig(**kw), 3)
    logits = torch.randn(2, 3, 4, 4)
    target = torch.full((2, 4, 4), IGNORE_INDEX)
    v, g = value_and_grad(loss, logits, target)
    assert v.shape == () and v.item() == 0.0
    assert torch.equal(g, torch.zeros_like(g))


@pytest.mark.parametrize("kw", ALL_CONFIGS, ids=lambda kw: str(kw.get("name", "sum")))
def test_finite_gradients_even_when_confident(kw):
    loss = build_loss(LossConfig(**kw), 3)
    logits, target = random_batch(3)
    onehot = nn.functional.one_hot(target.clamp(max=2), 3).permute(0, 3, 1, 2)
    for scale in (1.0, 1e3):  # 1e3: softmax saturates to exactly 0/1 in float32
        x = (logits * scale + 30 * onehot).float()
        v, g = value_and_grad(loss, x, target)
        assert torch.isfinite(v) and torch.isfinite(g).all() and v.item() >= 0


def test_losses_decrease_towards_the_target():
    logits, target = random_batch(4)
    onehot = nn.functional.one_hot(target.clamp(max=2), 3).permute(0, 3, 1, 2)
    for name in NAMES:
        loss = loss_of(name=name)
        assert loss(logits + 20 * onehot, target) < loss(logits, target), name


# ----------------------------------------------------------------- weighted sum


def test_weighted_sum_equals_sum_of_parts():
    cfg = LossConfig(terms=[{"name": "ce", "weight": 1.0}, {"name": "dice", "weight": 0.5},
                            {"name": "lovasz", "weight": 0.25}], class_weights=[1.0, 2.0, 0.5])
    loss = build_loss(cfg, 3)
    assert isinstance(loss, WeightedSum)
    logits, target = random_batch(5)
    parts = {n: build_loss(LossConfig(name=n, class_weights=[1.0, 2.0, 0.5] if n == "ce" else None),
                           3)(logits, target) for n in ("ce", "dice", "lovasz")}
    expected = parts["ce"] + 0.5 * parts["dice"] + 0.25 * parts["lovasz"]
    assert loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-12)


def test_single_loss_is_not_wrapped():
    assert not isinstance(loss_of(name="dice"), WeightedSum)
    assert isinstance(build_loss(LossConfig(terms=[{"name": "dice", "weight": 2.0}]), 3), WeightedSum)


def test_registry_matches_config_choices():
    import typing

    assert set(LOSSES) == set(typing.get_args(LossConfig.model_fields["name"].annotation)) == set(NAMES)


# ----------------------------------------------------------------- class weights


def test_inverse_class_weights_hand_computed():
    # seed 000 §5.3.3: w_c = N / (2 N_c) with N = 100 counted pixels; the empty class gets 0
    w = class_weights_from_counts([10, 30, 0, 60], "inverse")
    assert w.dtype == torch.float32
    assert w.tolist() == pytest.approx([5.0, 100 / 60, 0.0, 100 / 120])
    # the ratios are plain inverse frequency: w_a / w_b = N_b / N_a
    assert w[0] / w[3] == pytest.approx(6.0)


def test_inverse_weight_scale_does_not_change_the_weighted_ce():
    logits, target = torch.randn(1, 3, 4, 4), torch.randint(0, 3, (1, 4, 4))
    w = class_weights_from_counts([10, 30, 60], "inverse")
    ce = build_loss(LossConfig(name="ce", class_weights=w.tolist()), 3)
    ce_scaled = build_loss(LossConfig(name="ce", class_weights=(3 * w).tolist()), 3)
    assert float(ce(logits, target)) == pytest.approx(float(ce_scaled(logits, target)))


def test_median_class_weights_hand_computed():
    # f = (.1, .3, .6) over counted classes, median .3 -> w = .3 / f
    assert class_weights_from_counts([10, 30, 0, 60], "median").tolist() == pytest.approx(
        [3.0, 1.0, 0.0, 0.5]
    )
    # even number of classes: median of (.05, .15, .3, .5) is (.15 + .3) / 2 = .225
    w = class_weights_from_counts(np.array([10, 30, 60, 100]), "median").tolist()
    assert w == pytest.approx([0.225 / 0.05, 0.225 / 0.15, 0.225 / 0.3, 0.225 / 0.5])


def test_class_weight_errors():
    with pytest.raises(RsSegError, match="no class has any labelled pixel"):
        class_weights_from_counts([0, 0], "inverse")
    with pytest.raises(RsSegError, match="counts >= 0"):
        class_weights_from_counts([3, -1], "median")
    with pytest.raises(RsSegError, match="needs the class pixel counts"):
        build_loss(LossConfig(class_weights="inverse"), 3)
    with pytest.raises(RsSegError, match="2 class pixel counts for 3 classes"):
        build_loss(LossConfig(class_weights="median"), 3, class_counts=np.array([4, 5]))
    with pytest.raises(RsSegError, match="2 values for 3 classes"):
        build_loss(LossConfig(class_weights=[1.0, 2.0]), 3)


def test_count_based_weights_reach_the_loss():
    counts = np.array([10, 30, 60])
    loss = build_loss(LossConfig(name="ce", class_weights="inverse"), 3, class_counts=counts)
    assert loss.weight.tolist() == pytest.approx(class_weights_from_counts(counts, "inverse").tolist())
    assert "weight" not in loss.state_dict()  # derived from config + counts, not checkpointed
    loss = build_loss(SimpleNamespace(name="focal", terms=None, class_weights="median", class_weight_power=1.0, gamma=2.0,
                                      alpha=None, label_smoothing=0.0, smooth=0.0), 3, counts)
    assert loss.weight.tolist() == pytest.approx([3.0, 1.0, 0.5])


# ----------------------------------------------------------------- config


def test_unknown_loss_name_lists_valid_names():
    with pytest.raises(RsSegError) as exc:
        load_config(None, ["loss.name=foo"])
    msg = str(exc.value)
    assert "loss.name" in msg and "'foo'" in msg
    for name in NAMES:
        assert f"'{name}'" in msg


def test_default_and_existing_loss_configs_stay_valid():
    cfg = load_config(None)
    assert cfg.loss.name == "ce" and cfg.loss.terms is None and cfg.loss.class_weights is None
    assert load_config(None, ["loss={name: ce}"]).loss == cfg.loss
    assert load_config(None, ["loss.class_weights=[1, 2.5]"]).loss.class_weights == [1.0, 2.5]


def test_terms_parse_and_round_trip():
    cfg = load_config(None, ["loss.terms=[{name: ce}, {name: dice, weight: 0.5}]",
                             "loss.class_weights=median"])
    assert [(t.name, t.weight) for t in cfg.loss.terms] == [("ce", 1.0), ("dice", 0.5)]
    assert cfg.loss.class_weights == "median"
    # the resolved config written to a run directory must load again
    import yaml

    from rsseg.config import validate_config

    again = validate_config(yaml.safe_load(cfg.to_yaml()))
    assert again.loss == cfg.loss


@pytest.mark.parametrize(
    "override, message",
    [
        (["loss.name=dice", "loss.terms=[{name: ce}]"], "either `name` or `terms`"),
        (["loss.terms=[]"], "loss.terms"),
        (["loss.terms=[{name: tversky}]"], "'lovasz'"),
        (["loss.terms=[{name: ce, weight: 0}]"], "greater than 0"),
        (["loss.name=dice", "loss.class_weights=inverse"], "ce and focal only"),
        (["loss.class_weights=[1, -1]"], ">= 0"),
        (["loss.class_weights=inverted"], "loss.class_weights"),
        (["loss.gamma=-1"], "loss.gamma"),
    ],
)
def test_loss_config_errors(override, message):
    with pytest.raises(RsSegError, match=message.replace("[", r"\[")):
        load_config(None, override)


# ----------------------------------------------------------------- class_pixel_counts


def write_mask(path, array, dtype="uint8", **kw):
    profile = dict(driver="GTiff", width=array.shape[1], height=array.shape[0], count=1, dtype=dtype)
    profile.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(array.astype(dtype), 1)


def test_class_pixel_counts_exact_over_tiles(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 3, (40, 56))
    a[rng.random(a.shape) < 0.2] = IGNORE_INDEX
    b = rng.integers(0, 3, (20, 24))
    # a: 16x16 tiles with partial edge tiles; b: int16 striped
    write_mask(tmp_path / "a.tif", a, tiled=True, blockxsize=16, blockysize=16)
    write_mask(tmp_path / "b.tif", b, dtype="int16")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(tmp_path / "a.tif") as src:
            assert len(list(src.block_windows(1))) == 3 * 4  # edge tiles are partial
    counts = class_pixel_counts([tmp_path / "a.tif", tmp_path / "b.tif"], num_classes=4)
    expected = [int((a == c).sum() + (b == c).sum()) for c in range(4)]
    assert counts.dtype == np.int64 and counts.tolist() == expected and expected[3] == 0


def test_class_pixel_counts_png(tmp_path):
    a = np.array([[0, 1, 1], [2, 255, 1]])
    write_mask(tmp_path / "m.png", a, driver="PNG")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. NotGeoreferencedWarning must be silenced
        counts = class_pixel_counts([tmp_path / "m.png"], num_classes=3)
    assert counts.tolist() == [1, 3, 1]


def test_class_pixel_counts_bad_values_name_file(tmp_path):
    write_mask(tmp_path / "ok.tif", np.zeros((8, 8)))
    bad = np.zeros((8, 8))
    bad[0, 0], bad[3, 3], bad[4, 4] = 7, 9, IGNORE_INDEX
    write_mask(tmp_path / "bad.tif", bad)
    with pytest.raises(RsSegError, match=r"bad\.tif: mask values \[7, 9\]"):
        class_pixel_counts([tmp_path / "ok.tif", tmp_path / "bad.tif"], num_classes=3)
    write_mask(tmp_path / "neg.tif", np.array([[0, -2], [1, 3]]), dtype="int16")
    with pytest.raises(RsSegError, match=r"neg\.tif: mask values \[-2, 3\]"):
        class_pixel_counts([tmp_path / "neg.tif"], num_classes=3)
    write_mask(tmp_path / "float.tif", np.zeros((4, 4)), dtype="float32")
    with pytest.raises(RsSegError, match="not an integer type"):
        class_pixel_counts([tmp_path / "float.tif"], num_classes=3)
    (tmp_path / "junk.tif").write_text("not a raster")
    with pytest.raises(RsSegError, match="junk.tif"):
        class_pixel_counts([tmp_path / "junk.tif"], num_classes=3)


def test_class_weight_power_softens_median_weights():
    counts = [900, 90, 10]
    full = build_loss(LossConfig(name="ce", class_weights="median"), 3, counts).weight
    root = build_loss(LossConfig(name="ce", class_weights="median", class_weight_power=0.5), 3, counts).weight
    assert torch.allclose(root, full.sqrt())
    assert root[2] < full[2] and root[0] > full[0]  # the rare class gains less, the common one loses less


def test_class_weight_power_needs_computed_weights():
    with pytest.raises(ValueError, match="class_weight_power"):
        LossConfig(name="ce", class_weights=[1.0, 2.0], class_weight_power=0.5)
    with pytest.raises(ValueError, match="class_weight_power"):
        LossConfig(name="ce", class_weight_power=0.5)


def test_class_weight_fade_moves_the_weights_from_full_to_one_and_keeps_absent_classes_at_zero():
    from rsseg.training.losses import class_weight_fade

    counts = [900, 90, 0, 10]
    cfg = LossConfig(name="ce", class_weights="median", class_weight_final_power=0.0)
    loss = build_loss(cfg, 4, counts)
    full = loss.weight.clone()
    fade = class_weight_fade(cfg, loss, counts)
    assert fade.update(0.0) == 1.0 and torch.allclose(loss.weight, full)
    assert fade.update(0.5) == pytest.approx(0.5)
    assert torch.allclose(loss.weight, full.sqrt())
    fade.update(2.0)  # past the end: clipped to the final power
    assert loss.weight.tolist() == [1.0, 1.0, 0.0, 1.0]


def test_class_weight_fade_reaches_every_weighted_term_and_starts_from_the_power():
    from rsseg.training.losses import class_weight_fade

    counts = [900, 90, 10]
    cfg = LossConfig(terms=[{"name": "focal"}, {"name": "dice"}], class_weights="median",
                     class_weight_power=0.5, class_weight_final_power=0.25)
    loss = build_loss(cfg, 3, counts)
    focal = next(m for m in loss.modules() if m.__class__.__name__ == "FocalLoss")
    start = focal.weight.clone()
    fade = class_weight_fade(cfg, loss, counts)
    assert fade.update(1.0) == pytest.approx(0.25)
    assert torch.allclose(focal.weight, start.sqrt())  # (w ** 0.5) ** 0.5


def test_class_weight_fade_is_off_by_default_and_needs_computed_weights():
    from rsseg.training.losses import class_weight_fade

    cfg = LossConfig(name="ce", class_weights="median")
    assert class_weight_fade(cfg, build_loss(cfg, 3, [1, 2, 3]), [1, 2, 3]) is None
    with pytest.raises(ValueError, match="class_weight_final_power"):
        LossConfig(name="ce", class_weights=[1.0, 2.0], class_weight_final_power=0.0)
    with pytest.raises(ValueError, match="class_weight_final_power"):
        LossConfig(name="ce", class_weight_final_power=0.0)
    with pytest.raises(ValueError, match="class_weight_final_power"):
        LossConfig(name="ce", class_weights="median", class_weight_final_power=1.5)
