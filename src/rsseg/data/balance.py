"""Class balancing over a per-tile class histogram ``hist`` (T tiles x C classes, pixel counts).

- ``ebb_select``: Entropy-Based Balancing (seed 000 §3.2, Algorithm 1), a greedy subset
  whose cumulative class histogram has maximal entropy; ``ebb_reference`` is the plain
  per-tile loop it is checked against.
- ``repeat_factors`` / ``skip_probabilities`` / ``sampling_weights`` / ``expand_indices``:
  class-aware oversampling (seed 004 §3.3; LVIS repeat factors as an alternative).
- ``restrict``: the restricted subset of seed 003 (drop tiles dominated by one class).
- ``class_weights``: inverse frequency (seed 000 §5.3.3) and median frequency (seeds 003/004).

Ignored classes (``ignore``, e.g. GID's "unlabeled") are dropped from every share, entropy
and weight. Everything is pure numpy; ``tile_histograms`` builds ``hist`` from a mask.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from rsseg.classes import IGNORE_INDEX
from rsseg.data.grid import grid_positions
from rsseg.errors import RsSegError

#: EBB scores closer than this (nats) are ties, broken by the lowest tile index, so that
#: rounding (vectorised vs per-tile arithmetic) never decides the order.
TIE_TOL = 1e-9
OBJECTIVES = ("max", "min")


def _counted(hist: np.ndarray, ignore: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(float64 (T, K) histogram of the counted classes, their original class indices)."""
    h = np.asarray(hist)
    if h.ndim != 2 or h.shape[1] == 0:
        raise RsSegError(f"class histogram must be 2-D (tiles, classes), got shape {h.shape}")
    if not (np.issubdtype(h.dtype, np.integer) or np.issubdtype(h.dtype, np.floating)):
        raise RsSegError(f"class histogram must hold numbers, got {h.dtype}")
    h = h.astype(np.float64)
    if not np.isfinite(h).all() or (h < 0).any():
        raise RsSegError("class histogram must hold finite pixel counts >= 0")
    keep = np.asarray(_kept_classes(h.shape[1], ignore))
    return np.ascontiguousarray(h[:, keep]), keep


def _kept_classes(num_classes: int, ignore: Sequence[int]) -> list[int]:
    bad = [i for i in ignore if not 0 <= int(i) < num_classes]
    if bad:
        raise RsSegError(f"ignored classes {bad} are outside 0..{num_classes - 1}")
    kept = [c for c in range(num_classes) if c not in {int(i) for i in ignore}]
    if not kept:
        raise RsSegError("every class is ignored: nothing left to balance")
    return kept


def _check_select_args(size: int, step: int, objective: str) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise RsSegError(f"EBB subset size must be an integer >= 1, got {size!r}")
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise RsSegError(f"EBB step must be an integer >= 1, got {step!r}")
    if objective not in OBJECTIVES:
        raise RsSegError(f"EBB objective must be one of {OBJECTIVES}, got {objective!r}")


def class_entropy(counts: np.ndarray | Sequence[float], ignore: Sequence[int] = ()) -> np.ndarray:
    """Shannon entropy (nats) of the class distribution along the last axis; 0 if empty.

    ``(C,)`` counts give a scalar array, ``(T, C)`` one entropy per tile.
    """
    x = np.asarray(counts, dtype=np.float64)
    if x.ndim == 0 or (x < 0).any() or not np.isfinite(x).all():
        raise RsSegError("class counts must be an array of finite values >= 0")
    x = x[..., _kept_classes(x.shape[-1], ignore)]
    total = x.sum(-1, keepdims=True)
    p = x / np.where(total > 0, total, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(-1)


def _xlogx(x: float) -> float:
    return x * math.log(x) if x > 0 else 0.0


def ebb_select(
    hist: np.ndarray, size: int, step: int = 1, objective: str = "max", ignore: Sequence[int] = ()
) -> np.ndarray:
    """Entropy-Based Balancing: ``size`` tile indices, in the order they were chosen.

    Greedy (seed 000, Algorithm 1): with ``C`` the class histogram of the tiles chosen so
    far (ignored classes left out), each step adds the tile ``t`` whose ``H(C + h_t)`` is
    best. The listing's line 9 says *min*, but the text's goal (a balanced subset, Fig. 4)
    needs the *max*, so ``objective="max"`` is the default; ``"min"`` follows the listing
    literally. Ties (within ``TIE_TOL``) go to the lowest index.

    The seed's "granularity" (512) is the side of the tiles D is cut into, i.e. how
    ``hist`` was built (``tile_histograms``), not a parameter of the greedy loop. ``step``
    is this library's speed knob: scores are evaluated once per ``step`` picks, and the
    ``step`` best tiles of one evaluation are all taken (``step=1`` is Algorithm 1).

    Tiles without counted pixels are never chosen; if fewer than ``size`` tiles have any,
    all of them are returned. One evaluation is O(T) vectorised work plus the nonzero
    entries of the classes that changed, so the whole run is O(size/step * T * C).
    """
    _check_select_args(size, step, objective)
    h, _ = _counted(hist, ignore)
    eligible = np.flatnonzero(h.sum(1) > 0)
    h = h[eligible]
    t_count, k_count = h.shape
    n = h.sum(1)
    # class-major sparse layout: segment k of (tiles, vals, d) holds class k's nonzeros
    rows, tiles = np.nonzero(h.T)
    vals = h.T[rows, tiles]
    bounds = np.searchsorted(rows, np.arange(k_count + 1))
    d = vals * np.log(vals)  # g(C_k + h) - g(C_k) with g(x) = x log x, C = 0
    acc = np.bincount(tiles, weights=d, minlength=t_count)  # sum over a tile's classes
    cum = np.zeros(k_count)
    total = 0.0
    pen = np.zeros(t_count)  # -inf once taken
    denom, score, tmp = np.empty(t_count), np.empty(t_count), np.empty(t_count)
    hit = np.empty(t_count, dtype=bool)
    longest = int(np.diff(bounds).max(initial=0))
    buf_x, buf_l = np.empty(longest), np.empty(longest)
    chosen: list[int] = []
    want = min(size, t_count)
    while len(chosen) < want:
        # H(C + h_t) = log(N + n_t) - (sum_k g(C_k) + acc_t) / (N + n_t), in place
        np.add(n, total, out=denom)
        np.log(denom, out=score)
        np.add(acc, sum(map(_xlogx, cum)), out=tmp)
        np.divide(tmp, denom, out=tmp)
        if objective == "max":
            np.subtract(score, tmp, out=score)
        else:
            np.subtract(tmp, score, out=score)
        np.add(score, pen, out=score)
        picks = []
        for _ in range(min(step, want - len(chosen))):
            np.greater_equal(score, score.max() - TIE_TOL, out=hit)
            m = int(hit.argmax())
            picks.append(m)
            score[m] = pen[m] = -np.inf
        chosen.extend(picks)
        add = h[picks].sum(0)
        total += float(add.sum())
        cum += add
        for k in np.flatnonzero(add):  # classes whose C_k changed: refresh their terms
            lo, hi = bounds[k], bounds[k + 1]
            x, lx = buf_x[: hi - lo], buf_l[: hi - lo]
            np.add(vals[lo:hi], cum[k], out=x)
            np.log(x, out=lx)
            np.multiply(x, lx, out=x)
            np.subtract(x, _xlogx(cum[k]), out=x)  # new g(C_k + h) - g(C_k)
            np.subtract(x, d[lo:hi], out=lx)
            d[lo:hi] = x
            acc[tiles[lo:hi]] += lx
    return eligible[np.asarray(chosen, dtype=np.int64)]


def ebb_reference(
    hist: np.ndarray, size: int, step: int = 1, objective: str = "max", ignore: Sequence[int] = ()
) -> np.ndarray:
    """``ebb_select`` written as the plain per-tile loop of Algorithm 1 (slow; for checks)."""
    _check_select_args(size, step, objective)
    h = _counted(hist, ignore)[0].tolist()
    sign = 1.0 if objective == "max" else -1.0
    remaining = [t for t, row in enumerate(h) if sum(row) > 0]
    cum = [0.0] * len(h[0]) if h else []
    chosen: list[int] = []
    while len(chosen) < size and remaining:
        scores = {}
        for t in remaining:
            x = [c + v for c, v in zip(cum, h[t])]
            n = sum(x)
            scores[t] = sign * -sum(v / n * math.log(v / n) for v in x if v > 0)
        for _ in range(min(step, size - len(chosen), len(remaining))):
            best = max(scores[t] for t in remaining)
            m = next(t for t in remaining if scores[t] >= best - TIE_TOL)
            remaining.remove(m)
            chosen.append(m)
            cum = [c + v for c, v in zip(cum, h[m])]
    return np.asarray(chosen, dtype=np.int64)


def tile_histograms(
    mask: np.ndarray, granularity: int, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a class mask into ``granularity``-pixel tiles: ((T, C) int64 counts, (T, 2) origins).

    This is the seed's granularity (512 in seed 000). Origins follow
    ``rsseg.data.grid.grid_positions``, the grid the training chips use, so the remainder of
    a side that is not a multiple of the tile is covered too. ``ignore_index`` pixels are
    not counted; any other value outside the classes is an error.
    """
    m = np.asarray(mask)
    if m.ndim != 2 or not np.issubdtype(m.dtype, np.integer):
        raise RsSegError(f"mask must be a 2-D integer array, got {m.dtype} {m.shape}")
    if isinstance(granularity, bool) or not isinstance(granularity, (int, np.integer)) \
            or granularity < 1:
        raise RsSegError(f"granularity (tile side in pixels) must be >= 1, got {granularity!r}")
    hists, origins = [], []
    for r in grid_positions(m.shape[0], granularity):
        for c in grid_positions(m.shape[1], granularity):
            block = m[r:r + granularity, c:c + granularity].ravel()
            ok = (block >= 0) & (block < num_classes)
            stray = set(np.unique(block[~ok]).tolist()) - {ignore_index}
            if stray:
                raise RsSegError(f"mask values {sorted(stray)[:20]} are not classes "
                                 f"0..{num_classes - 1} nor the ignore value {ignore_index}")
            hists.append(np.bincount(block[ok].astype(np.intp), minlength=num_classes))
            origins.append((r, c))
    return np.stack(hists).astype(np.int64), np.asarray(origins, dtype=np.int64)


def _shares(hist: np.ndarray, ignore: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(per-tile share of each class among counted pixels, full-width (T, C); counted totals)."""
    h, keep = _counted(hist, ignore)
    full = np.zeros((h.shape[0], np.asarray(hist).shape[1]))
    full[:, keep] = h
    totals = h.sum(1)
    return full / np.where(totals > 0, totals, 1.0)[:, None], totals


def _class_list(classes: int | Sequence[int], num_classes: int, what: str) -> list[int]:
    out = [int(classes)] if isinstance(classes, (int, np.integer)) else [int(c) for c in classes]
    bad = [c for c in out if not 0 <= c < num_classes]
    if bad:
        raise RsSegError(f"{what} classes {bad} are outside 0..{num_classes - 1}")
    return out


def repeat_factors(
    hist: np.ndarray,
    repeats: Mapping[int, float] | None = None,
    *,
    threshold: float | None = None,
    default: float = 1.0,
    min_pixels: int = 1,
    ignore: Sequence[int] = (),
) -> np.ndarray:
    """Per-tile repeat factor ``r_t >= 0`` (float (T,)) from the classes a tile contains.

    Give exactly one of:

    - ``repeats`` (seed 004 §3.3): ``r_t = max(repeats[c] for c present in t)``, or
      ``default`` when no listed class is present. The seed's DeepGlobe setting is
      ``{water: 6, rangeland: 3, forest: 3}``.
    - ``threshold`` (LVIS repeat-factor sampling, Gupta et al. 2019): with ``f_c`` the
      fraction of tiles containing ``c``, ``r_c = max(1, sqrt(threshold / f_c))`` and
      ``r_t = max(r_c for c present in t)``; 1 for a tile with no counted class.

    A class is present when it has at least ``min_pixels`` pixels; ignored classes never are.
    """
    if (repeats is None) == (threshold is None):
        raise RsSegError("repeat_factors needs exactly one of 'repeats' or 'threshold'")
    if not min_pixels > 0:
        raise RsSegError(f"min_pixels must be > 0, got {min_pixels!r}")
    h, keep = _counted(hist, ignore)
    present = np.zeros((h.shape[0], np.asarray(hist).shape[1]), dtype=bool)
    present[:, keep] = h >= min_pixels
    if threshold is not None:
        if not threshold > 0:
            raise RsSegError(f"repeat-factor threshold must be > 0, got {threshold!r}")
        freq = present.mean(0)
        r_c = np.maximum(1.0, np.sqrt(threshold / np.where(freq > 0, freq, np.inf)))
        return np.where(present, r_c, 1.0).max(1)
    classes = _class_list(list(repeats), present.shape[1], "repeat")
    r = np.array([float(repeats[c]) for c in classes])
    if (r < 0).any() or default < 0:
        raise RsSegError("repeat factors must be >= 0")
    sub = present[:, classes]
    return np.where(sub.any(1), np.where(sub, r, -np.inf).max(1), float(default))


def skip_probabilities(
    hist: np.ndarray,
    majority: int | Sequence[int],
    *,
    share: float = 0.7,
    p: float = 0.7,
    protect: Sequence[int] = (),
    ignore: Sequence[int] = (),
) -> np.ndarray:
    """Per-tile probability of leaving a tile out (seed 004: 0.7 for tiles with more than
    70 % agriculture and no rare class). ``p`` where a ``majority`` class has a share of the
    counted pixels above ``share`` and no ``protect`` class is present, else 0."""
    if not 0.0 <= p <= 1.0 or not 0.0 <= share <= 1.0:
        raise RsSegError(f"skip probability and share must lie in [0, 1], got {p!r}, {share!r}")
    shares, _ = _shares(hist, ignore)
    majority = _class_list(majority, shares.shape[1], "majority")
    protect = _class_list(protect, shares.shape[1], "protected")
    dominated = (shares[:, majority] > share).any(1)
    safe = ~(shares[:, protect] > 0).any(1)
    return np.where(dominated & safe, float(p), 0.0)


def sampling_weights(repeats: np.ndarray, skips: np.ndarray | None = None) -> np.ndarray:
    """Expected draws per tile and epoch, ``r_t * (1 - s_t)``: the weights for
    ``torch.utils.data.WeightedRandomSampler(w, num_samples=round(w.sum()))``."""
    r = np.asarray(repeats, dtype=np.float64)
    s = np.zeros_like(r) if skips is None else np.asarray(skips, dtype=np.float64)
    if r.shape != s.shape or r.ndim != 1 or (r < 0).any() or ((s < 0) | (s > 1)).any():
        raise RsSegError("repeat factors (>= 0) and skip probabilities ([0, 1]) must be "
                         "1-D arrays of the same length")
    return r * (1.0 - s)


def expand_indices(
    repeats: np.ndarray, skips: np.ndarray | None = None, seed: int | None = 0
) -> np.ndarray:
    """One epoch's tile list: tile ``t`` is dropped with probability ``s_t``, otherwise it
    appears ``floor(r_t)`` times plus once more with probability ``frac(r_t)`` (the seed's
    expanded dataset; stochastic rounding keeps the expectation ``r_t * (1 - s_t)``)."""
    sampling_weights(repeats, skips)  # validates both
    rng = np.random.default_rng(seed)
    r = np.asarray(repeats, dtype=np.float64)
    kept = rng.random(r.size) >= (0.0 if skips is None else np.asarray(skips, np.float64))
    copies = np.floor(r) + (rng.random(r.size) < r - np.floor(r))
    return np.repeat(np.arange(r.size), (copies * kept).astype(np.int64))


def most_frequent(counts: np.ndarray | Sequence[float], k: int,
                  ignore: Sequence[int] = ()) -> list[int]:
    """The ``k`` classes with the most pixels (ignored ones left out), most frequent first."""
    c = np.asarray(counts, dtype=np.float64)
    kept = _kept_classes(c.shape[-1], ignore)
    order = sorted(kept, key=lambda i: (-c[i], i))
    return order[:k]


def restrict(
    hist: np.ndarray,
    max_share: float = 0.5,
    classes: Sequence[int] | None = None,
    ignore: Sequence[int] = (),
) -> np.ndarray:
    """Indices of the tiles kept by seed 003's restricted subset: a tile is dropped when one
    of ``classes`` (default: every counted class; the seed used its 3 most frequent,
    ``most_frequent(counts, 3)``) covers more than ``max_share`` of its counted pixels.
    Tiles without counted pixels are dropped too."""
    if not 0.0 < max_share <= 1.0:
        raise RsSegError(f"max_share must lie in (0, 1], got {max_share!r}")
    shares, totals = _shares(hist, ignore)
    cols = _kept_classes(shares.shape[1], ignore) if classes is None else \
        _class_list(classes, shares.shape[1], "restricted")
    return np.flatnonzero((totals > 0) & ~(shares[:, cols] > max_share).any(1))


def class_weights(
    counts: np.ndarray | Sequence[float], mode: str, ignore: Sequence[int] = ()
) -> np.ndarray:
    """Per-class loss weights (float64) from training pixel counts ``N_c``.

    Counted classes: not ignored and ``N_c > 0``; the others get weight 0. ``N = sum N_c``
    over counted classes.

    - ``inverse`` (seed 000 §5.3.3): ``w_c = N / (2 N_c)``.
    - ``median`` (seeds 003/004, Eigen & Fergus 2015): ``w_c = median(f) / f_c`` with
      ``f_c = N_c / N`` over the counted classes (mean of the two middle values if even).
    """
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size == 0 or (n < 0).any() or not np.isfinite(n).all():
        raise RsSegError(f"class pixel counts must be a 1-D list of counts >= 0, got {counts!r}")
    n = np.where(np.isin(np.arange(n.size), _kept_classes(n.size, ignore)), n, 0.0)
    present = n > 0
    if not present.any():
        raise RsSegError("class weights need pixel counts, but no class has any labelled pixel")
    weights = np.zeros_like(n)
    if mode == "inverse":
        weights[present] = n.sum() / (2.0 * n[present])
    elif mode == "median":
        freq = n[present] / n.sum()
        weights[present] = np.median(freq) / freq
    else:
        raise RsSegError(f"unknown class weighting '{mode}'; available: inverse, median")
    return weights
