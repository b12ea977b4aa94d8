"""Scene-level splits, decided before any chip is cut (no test pixel from a training scene).

The unit of a split is a scene's ``group`` (e.g. Dubai's "Tile 3", a FLAIR domain), so
neighbouring scenes of one area never straddle train and test. Three modes:

- named lists (``data.split: {train: [...], val: [...], test: [...]}``): globs matched against
  scene ids and groups; scenes matched by no list are left out, by two lists are an error;
- seeded ratios (``data.split: {ratios: [0.7, 0.15, 0.15], seed: 0}``): the sorted groups are
  shuffled with ``seed`` and cut at the ratios (every split with a positive ratio gets at least
  one group when there are enough);
- the dataset's official split (``data.split`` unset). Datasets whose official split has only
  train and test mark the training pool ``trainval``: validation groups are carved from it
  with the default ratios (val share 0.15 / 0.85). Datasets without one use the ratios.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from rsseg.data.scene import Scene
from rsseg.errors import RsSegError

if TYPE_CHECKING:
    from rsseg.config.data import SplitConfig

SPLITS = ("train", "val", "test")
DEFAULT_RATIOS = (0.7, 0.15, 0.15)


def split_scenes(
    scenes: Sequence[Scene],
    cfg: SplitConfig | None,
    official: Callable[[Scene], str | None] | None = None,
) -> dict[str, list[Scene]]:
    """``{"train": [...], "val": [...], "test": [...]}``, each sorted by scene id."""
    if cfg is not None and cfg.has_lists:
        out = _by_lists(scenes, cfg)
    elif cfg is not None and cfg.ratios is not None:
        out = _by_ratios(scenes, cfg.ratios, cfg.seed)
    elif official is not None:
        out = _by_official(scenes, official, cfg.seed if cfg is not None else 0)
    else:
        out = _by_ratios(scenes, DEFAULT_RATIOS, cfg.seed if cfg is not None else 0)
    return {name: sorted(out[name], key=lambda s: s.id) for name in SPLITS}


def _matches(scene: Scene, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(scene.id, p) or fnmatch.fnmatchcase(scene.group, p) for p in patterns)


def _by_lists(scenes: Sequence[Scene], cfg: SplitConfig) -> dict[str, list[Scene]]:
    lists = {name: getattr(cfg, name) or [] for name in SPLITS}
    for name, patterns in lists.items():
        for pattern in patterns:
            if not any(_matches(s, [pattern]) for s in scenes):
                raise RsSegError(f"data.split.{name}: '{pattern}' matches no scene id or group")
    out: dict[str, list[Scene]] = {name: [] for name in SPLITS}
    for scene in scenes:
        hits = [name for name, patterns in lists.items() if _matches(scene, patterns)]
        if len(hits) > 1:
            raise RsSegError(f"data.split: scene '{scene.id}' (group '{scene.group}') is in {' and '.join(hits)}")
        if hits:
            out[hits[0]].append(scene)
    return out


def assign_groups(groups: Sequence[str], ratios: Sequence[float], seed: int) -> dict[str, str]:
    """Group -> split name: a seeded permutation of the sorted groups cut at ``ratios``."""
    unique = sorted(set(groups))
    n = len(unique)
    order = [unique[i] for i in np.random.default_rng(seed).permutation(n)]
    total = float(sum(ratios))
    counts = [round(r / total * n) for r in ratios]
    for i, r in enumerate(ratios):  # a split asked for gets a group when one can be spared
        if r > 0 and counts[i] == 0 and n > sum(1 for c in counts if c > 0):
            counts[i] = 1
    while sum(counts) > n:
        counts[int(np.argmax(counts))] -= 1
    counts[0] += n - sum(counts)  # rounding remainder goes to train
    names = [name for name, c in zip(SPLITS[: len(ratios)], counts, strict=True) for _ in range(c)]
    return dict(zip(order, names, strict=True))


def _by_ratios(scenes: Sequence[Scene], ratios: Sequence[float], seed: int) -> dict[str, list[Scene]]:
    assignment = assign_groups([s.group for s in scenes], ratios, seed)
    out: dict[str, list[Scene]] = {name: [] for name in SPLITS}
    for scene in scenes:
        out[assignment[scene.group]].append(scene)
    return out


def _by_official(scenes: Sequence[Scene], official: Callable[[Scene], str | None], seed: int) -> dict[str, list[Scene]]:
    out: dict[str, list[Scene]] = {name: [] for name in SPLITS}
    pool: list[Scene] = []
    for scene in scenes:
        name = official(scene)
        if name == "trainval":
            pool.append(scene)
        elif name in SPLITS:
            out[name].append(scene)
    if pool:
        carved = _by_ratios(pool, DEFAULT_RATIOS[:2], seed)
        out["train"] += carved["train"]
        out["val"] += carved["val"]
    return out
