"""Entropy-Based Balancing: vectorised ``ebb_select`` vs the per-tile loop ``ebb_reference``.

Synthetic GID-15-sized problem: 27,000 tiles of 224 x 224 pixels, 16 classes with class 0
("unlabeled") ignored, S = 1680. Tiles are drawn from a Dirichlet mixture of scene types
(urban, farmland, forest, water, ...) so most tiles hold a few classes and the global priors
are skewed like the seed's Fig. 2. Prints the full-size time, both times on a problem small
enough for the reference, their ratio, and whether the selections are identical:
    .venv/bin/python benchmarks/ebb.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rsseg.data.balance import class_entropy, ebb_reference, ebb_select

#: scene types: (mixture weight, {class: Dirichlet concentration}); every class also gets 0.02
SCENES = [
    (0.30, {0: 6.0, 2: 3.0, 5: 1.0, 4: 0.6, 1: 0.5}),           # urban: residential, traffic
    (0.25, {0: 3.0, 6: 3.0, 7: 2.0, 5: 1.0, 3: 0.5, 8: 0.3}),   # farmland
    (0.15, {0: 4.0, 9: 3.0, 10: 0.4, 11: 0.3, 8: 0.3}),         # forest, shrub, grass
    (0.10, {0: 2.0, 13: 2.0, 14: 1.0, 15: 0.8, 6: 0.5}),        # water: river, lake, pond
    (0.15, {0: 5.0, 3: 1.5, 6: 1.5, 7: 1.0, 12: 0.1}),          # rural
    (0.05, {0: 1.0, 11: 1.0, 12: 0.8, 10: 1.0, 1: 1.0}),        # rare mix: grassland, industry
]


def synthetic_histograms(tiles: int, classes: int = 16, side: int = 224,
                         seed: int = 0) -> np.ndarray:
    """(tiles, classes) int64 pixel counts of ``side``-pixel tiles from the scene mixture."""
    rng = np.random.default_rng(seed)
    alpha = np.full((len(SCENES), classes), 0.02)
    for s, (_, conc) in enumerate(SCENES):
        for c, a in conc.items():
            alpha[s, c % classes] = a
    weights = np.array([w for w, _ in SCENES])
    scene = rng.choice(len(SCENES), size=tiles, p=weights / weights.sum())
    p = rng.gamma(alpha[scene])  # Dirichlet rows via normalised gammas
    p[p < 0.01 * p.sum(1, keepdims=True)] = 0.0  # a class under 1 % of a tile is absent
    p /= p.sum(1, keepdims=True)
    return rng.multinomial(side * side, p).astype(np.int64)


def timed(fn, *args, **kw) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=27_000)
    ap.add_argument("--size", type=int, default=1680)
    ap.add_argument("--classes", type=int, default=16)
    ap.add_argument("--small-tiles", type=int, default=1500)
    ap.add_argument("--small-size", type=int, default=120)
    ap.add_argument("--step", type=int, default=1, help="tiles taken per evaluation")
    ap.add_argument("--repeats", type=int, default=3, help="full-size runs; the best is shown")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ignore = (0,)

    small = synthetic_histograms(args.small_tiles, args.classes, seed=args.seed + 1)
    t_vec, sel_vec = timed(ebb_select, small, args.small_size, args.step, ignore=ignore)
    t_ref, sel_ref = timed(ebb_reference, small, args.small_size, args.step, ignore=ignore)
    same = np.array_equal(sel_vec, sel_ref)
    print(f"small problem: {args.small_tiles} tiles x {args.classes} classes, S = "
          f"{args.small_size}, step {args.step}")
    print(f"  ebb_select     {t_vec:8.3f} s")
    print(f"  ebb_reference  {t_ref:8.3f} s")
    print(f"  speed ratio    {t_ref / t_vec:8.1f} x   identical selections: {same}")

    hist = synthetic_histograms(args.tiles, args.classes, seed=args.seed)
    times = []
    for _ in range(args.repeats):
        cpu0 = time.process_time()
        wall, sel = timed(ebb_select, hist, args.size, args.step, ignore=ignore)
        times.append((wall, time.process_time() - cpu0))
    wall, cpu = min(times)
    present = (np.delete(hist, ignore, axis=1) > 0).sum(1).mean()
    print(f"full size: {args.tiles} tiles x {args.classes} classes ({present:.1f} counted "
          f"classes per tile), S = {args.size}, step {args.step}")
    print(f"  ebb_select     {wall:8.3f} s wall, {cpu:.3f} s CPU (best of {args.repeats})")
    h_all = float(class_entropy(hist.sum(0), ignore))
    h_sel = float(class_entropy(hist[sel].sum(0), ignore))
    rand = np.random.default_rng(args.seed).choice(args.tiles, args.size, replace=False)
    h_rand = float(class_entropy(hist[rand].sum(0), ignore))
    print(f"  class entropy: all tiles {h_all:.3f}, random subset {h_rand:.3f}, EBB {h_sel:.3f}"
          f" nats (max {np.log(args.classes - len(ignore)):.3f})")
    if not same:
        raise SystemExit("ebb_select and ebb_reference disagree")


if __name__ == "__main__":
    main()
