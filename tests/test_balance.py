"""Class balancing: EBB vs its per-tile reference, oversampling, restricted subset, weights, plots."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.data.balance import (
    class_entropy,
    class_weights,
    ebb_reference,
    ebb_select,
    expand_indices,
    most_frequent,
    repeat_factors,
    restrict,
    sampling_weights,
    skip_probabilities,
    tile_histograms,
)
from rsseg.data.prior_plots import plot_class_priors, plot_priors_before_after
from rsseg.errors import RsSegError


def skewed_hist(tiles: int, classes: int, seed: int, zero_tiles: int = 0) -> np.ndarray:
    """Sparse, skewed tile histograms (a few classes per tile, class 0 most frequent)."""
    rng = np.random.default_rng(seed)
    prior = 1.0 / np.arange(1, classes + 1) ** 1.5
    p = rng.dirichlet(prior * 2.0, size=tiles)
    p[p < 0.05] = 0
    p[p.sum(1) == 0, 0] = 1
    hist = rng.multinomial(400, p / p.sum(1, keepdims=True))
    hist[rng.choice(tiles, zero_tiles, replace=False)] = 0
    return hist


def entropy_of(hist: np.ndarray, sel: np.ndarray, ignore=()) -> float:
    return float(class_entropy(hist[sel].sum(0), ignore))


# ----------------------------------------------------------------- EBB


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("objective", ["max", "min"])
@pytest.mark.parametrize("step", [1, 3])
def test_ebb_matches_reference(seed, objective, step):
    hist = skewed_hist(40, 6, seed, zero_tiles=3)
    hist[7] = hist[3]  # duplicate tiles: exact ties must go to the lower index
    ignore = (1,) if seed % 2 else ()
    size = 15 + seed
    fast = ebb_select(hist, size, step, objective, ignore)
    slow = ebb_reference(hist, size, step, objective, ignore)
    assert fast.dtype == np.int64 and len(fast) == size
    np.testing.assert_array_equal(fast, slow)
    assert len(set(fast.tolist())) == size


def test_ebb_hand_example_and_ties():
    hist = np.array([[10, 0], [0, 10], [10, 10], [5, 0]])
    # max: (10,10) first (log 2); then (15,10) beats (20,10) and the tie (10,20)
    assert ebb_select(hist, 2).tolist() == [2, 3]
    # min (the listing's line 9 taken literally): pure tiles, lowest index first
    assert ebb_select(hist, 2, objective="min").tolist() == [0, 3]
    assert ebb_reference(hist, 2, objective="min").tolist() == [0, 3]


def test_ebb_step_ge_size_ranks_by_single_tile_entropy():
    hist = skewed_hist(30, 5, seed=7)
    h = class_entropy(hist)
    expected = sorted(range(30), key=lambda t: (-round(h[t], 12), t))[:10]
    assert ebb_select(hist, 10, step=10).tolist() == expected
    assert ebb_select(hist, 10, step=1).tolist() != expected  # the greedy really re-scores


def test_ebb_balances_better_than_random_and_all_tiles():
    hist = skewed_hist(400, 8, seed=3)
    sel = ebb_select(hist, 40)
    h_sel, h_all = entropy_of(hist, sel), float(class_entropy(hist.sum(0)))
    rng = np.random.default_rng(0)
    h_rand = [entropy_of(hist, rng.choice(400, 40, replace=False)) for _ in range(20)]
    assert h_sel > max(h_rand) + 0.05
    assert h_sel > h_all + 0.05
    assert entropy_of(hist, ebb_select(hist, 40, objective="min")) < min(h_rand)


def test_ebb_ignored_classes_do_not_count():
    hist = skewed_hist(50, 5, seed=11)
    hist[:, 0] = np.arange(50) * 1000  # a huge "unlabeled" class that would dominate
    hist[5, 1:] = 0  # only ignored pixels: never chosen
    sel = ebb_select(hist, 20, ignore=(0,))
    np.testing.assert_array_equal(sel, ebb_select(hist[:, 1:], 20))
    assert 5 not in sel.tolist()
    assert not np.array_equal(sel, ebb_select(hist, 20))


def test_ebb_size_at_least_tiles_and_zero_tiles():
    hist = skewed_hist(12, 4, seed=2, zero_tiles=2)
    empty = set(np.flatnonzero(hist.sum(1) == 0).tolist())
    for size in (12, 50):
        sel = ebb_select(hist, size)
        assert sorted(sel.tolist()) == sorted(set(range(12)) - empty)
        np.testing.assert_array_equal(sel, ebb_reference(hist, size))
    assert ebb_select(np.zeros((3, 4), int), 2).tolist() == []


@pytest.mark.parametrize("kwargs, match", [
    ({"size": 0}, "size must be an integer >= 1"),
    ({"size": -3}, "size must be an integer >= 1"),
    ({"size": 2.5}, "size must be an integer >= 1"),
    ({"size": 2, "step": 0}, "step must be an integer >= 1"),
    ({"size": 2, "objective": "best"}, "objective must be one of"),
    ({"size": 2, "ignore": (9,)}, "outside 0..2"),
    ({"size": 2, "ignore": (0, 1, 2)}, "every class is ignored"),
])
def test_ebb_errors(kwargs, match):
    hist = np.ones((4, 3), int)
    for fn in (ebb_select, ebb_reference):
        with pytest.raises(RsSegError, match=match):
            fn(hist, **kwargs)


def test_histogram_validation():
    with pytest.raises(RsSegError, match="2-D"):
        ebb_select(np.ones(5), 2)
    with pytest.raises(RsSegError, match=">= 0"):
        ebb_select(np.array([[1, -1]]), 1)
    with pytest.raises(RsSegError, match=">= 0"):
        restrict(np.array([[1.0, np.nan]]))


# ----------------------------------------------------------------- entropy, tiling


def test_class_entropy():
    assert float(class_entropy([5, 5, 5, 5])) == pytest.approx(math.log(4))
    assert float(class_entropy([100, 5, 5], ignore=(0,))) == pytest.approx(math.log(2))
    assert float(class_entropy([0, 0, 0])) == 0.0
    p = np.array([0.7, 0.2, 0.1])
    assert class_entropy([[7, 2, 1], [3, 0, 0]]).tolist() == pytest.approx(
        [float(-(p * np.log(p)).sum()), 0.0])


def test_tile_histograms():
    mask = np.array([[0, 0, 1, 1], [0, 2, 1, 1], [2, 2, IGNORE_INDEX, 0], [2, 2, 0, 0]])
    hist, origins = tile_histograms(mask, 2, 3)
    assert origins.tolist() == [[0, 0], [0, 2], [2, 0], [2, 2]]
    assert hist.tolist() == [[3, 0, 1], [0, 4, 0], [0, 0, 4], [3, 0, 0]]
    big = np.random.default_rng(0).integers(0, 3, (5, 7))
    hist, origins = tile_histograms(big, 3, 3)  # sides not multiples of 3: edge tiles shift
    assert len(hist) == 2 * 3 and hist.sum(1).tolist() == [9] * 6
    with pytest.raises(RsSegError, match=r"mask values \[7\]"):
        tile_histograms(np.full((4, 4), 7), 2, 3)
    with pytest.raises(RsSegError, match="granularity"):
        tile_histograms(mask, 0, 3)


# ----------------------------------------------------------------- oversampling (seed 004)


def test_repeat_factors_seed_rules():
    # classes: 0 unknown (ignored), 1 urban, 2 agriculture, 3 forest, 4 water
    hist = np.array([
        [0, 10, 90, 0, 0],   # nothing listed -> default
        [0, 0, 50, 5, 0],    # forest (rare) -> 3
        [0, 0, 50, 5, 1],    # forest + water -> max = 6
        [99, 1, 0, 0, 0],    # ignored class listed but never present -> default
    ])
    r = repeat_factors(hist, {4: 6, 3: 3, 0: 10}, default=2, ignore=(0,))
    assert r.tolist() == [2.0, 3.0, 6.0, 2.0]
    assert repeat_factors(hist, {4: 6}, min_pixels=2).tolist() == [1.0, 1.0, 1.0, 1.0]


def test_repeat_factors_lvis():
    hist = np.array([[5, 0, 0], [5, 0, 0], [5, 0, 0], [5, 1, 0]])
    # f = (1, 1/4, 0): r_0 = 1, r_1 = sqrt(0.5 / 0.25) = sqrt 2; the absent class plays no part
    assert repeat_factors(hist, threshold=0.5).tolist() == pytest.approx([1, 1, 1, math.sqrt(2)])
    assert repeat_factors(hist, threshold=0.1).tolist() == [1, 1, 1, 1]
    with pytest.raises(RsSegError, match="exactly one"):
        repeat_factors(hist)
    with pytest.raises(RsSegError, match="exactly one"):
        repeat_factors(hist, {1: 2}, threshold=0.5)


def test_skip_probabilities():
    hist = np.array([
        [0, 20, 80, 0, 0],   # agriculture 80 % of 100, nothing rare -> 0.7
        [0, 0, 80, 0, 1],    # 80/81 but holds water (protected) -> 0
        [0, 30, 70, 0, 0],   # exactly 70 %: not *more than* 70 % -> 0
        [500, 1, 9, 0, 0],   # 90 % of counted pixels; the ignored class is not counted
    ])
    s = skip_probabilities(hist, majority=2, share=0.7, p=0.7, protect=(3, 4), ignore=(0,))
    assert s.tolist() == [0.7, 0.0, 0.0, 0.7]
    s = skip_probabilities(hist, majority=[1, 2], share=0.5, p=0.25)  # nothing protected
    assert s.tolist() == [0.25, 0.25, 0.25, 0.0]  # row 3: 9 of 510 pixels without ignoring


def test_sampling_weights_and_expansion():
    assert sampling_weights(np.array([1.0, 2.5, 3.0]), np.array([0.0, 0.2, 1.0])).tolist() == \
        pytest.approx([1.0, 2.0, 0.0])
    n = 20_000
    r, s = np.full(n, 2.5), np.zeros(n)
    s[n // 2:] = 0.7
    idx = expand_indices(r, s, seed=1)
    copies = np.bincount(idx, minlength=n)
    assert set(copies[: n // 2].tolist()) == {2, 3}
    assert copies[: n // 2].mean() == pytest.approx(2.5, abs=0.03)
    assert (copies[n // 2:] > 0).mean() == pytest.approx(0.3, abs=0.02)
    np.testing.assert_array_equal(idx, expand_indices(r, s, seed=1))
    assert expand_indices(np.array([0.0, 1.0, 3.0])).tolist() == [1, 2, 2, 2]
    with pytest.raises(RsSegError, match="same length"):
        sampling_weights(np.ones(3), np.ones(2))


# ----------------------------------------------------------------- restricted subset (seed 003)


def test_restrict():
    hist = np.array([
        [0, 60, 40, 0],    # class 1 at 60 % -> dropped
        [0, 50, 50, 0],    # exactly 50 %: kept
        [100, 10, 5, 5],   # class 1 at 50 % of counted pixels: kept (class 0 ignored)
        [7, 0, 0, 0],      # no counted pixel: dropped
        [0, 0, 10, 90],    # class 3 dominates
    ])
    assert restrict(hist, 0.5, ignore=(0,)).tolist() == [1, 2]
    assert restrict(hist, 0.5, classes=[1], ignore=(0,)).tolist() == [1, 2, 4]
    assert most_frequent(hist.sum(0), 2, ignore=(0,)) == [1, 2]  # 120, 105 (class 3: 95)
    with pytest.raises(RsSegError, match="max_share"):
        restrict(hist, 0.0)


# ----------------------------------------------------------------- class weights


def test_class_weights_hand_computed():
    counts = [1000, 10, 30, 0, 60]  # class 0 ignored: N = 100
    assert class_weights(counts, "inverse", ignore=(0,)).tolist() == pytest.approx(
        [0.0, 5.0, 100 / 60, 0.0, 100 / 120])
    assert class_weights(counts, "median", ignore=(0,)).tolist() == pytest.approx(
        [0.0, 3.0, 1.0, 0.0, 0.5])
    # without ignoring: N = 1100, w = N / (2 N_c)
    assert class_weights(counts, "inverse")[0] == pytest.approx(0.55)
    with pytest.raises(RsSegError, match="unknown class weighting"):
        class_weights(counts, "sqrt")
    with pytest.raises(RsSegError, match="no class has any labelled pixel"):
        class_weights([5, 0], "inverse", ignore=(0,))


# ----------------------------------------------------------------- plots


CLASSES = ClassTable(
    names=("unlabeled", "urban", "farm", "water"),
    colors=((0, 0, 255), (255, 0, 0), (0, 200, 0), (255, 255, 0)),
    ignore=(0,),
)


def _colours(path) -> set[tuple[int, int, int]]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return {tuple(c) for c in np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)}


def test_plot_class_priors(tmp_path):
    counts = [500, 40, 300, 10]
    shown = _colours(plot_class_priors(counts, CLASSES, tmp_path / "all.png"))
    assert {(0, 0, 255), (255, 0, 0), (0, 200, 0), (255, 255, 0)} <= shown
    hidden = _colours(plot_class_priors(counts, CLASSES, tmp_path / "sub" / "c.png",
                                        title="GID", ignore_shown=False))
    assert (255, 0, 0) in hidden and (0, 0, 255) not in hidden
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["c.png"]  # no temp left
    with pytest.raises(RsSegError, match="4 class pixel counts"):
        plot_class_priors([1, 2], CLASSES, tmp_path / "bad.png")


def test_plot_priors_before_after(tmp_path):
    hist = skewed_hist(60, 4, seed=5)
    sel = ebb_select(hist, 10, ignore=(0,))
    path = plot_priors_before_after(hist.sum(0), hist[sel].sum(0), CLASSES, tmp_path / "ba.png")
    assert (255, 255, 0) in _colours(path)
