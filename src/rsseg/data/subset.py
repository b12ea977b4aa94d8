"""Which training chips an epoch uses: EBB tile subsets, restricted subsets, oversampling.

``rsseg data balance`` cuts every training mask (decoded by the dataset's codec) into G x G
tiles on the grid ``grid_positions(side, G)`` (``balance.tile_histograms``) and lets
``balance.ebb_select`` pick a subset; the JSON list names each tile by scene id, row, col
and size. ``data.subset: LIST`` then keeps the training chips of those tiles:

    Training chips (side T = ``data.tile_size``) lie on ``grid_positions(side, T)``. Each
    chip belongs to the one G-tile of its scene whose centre is nearest the chip's centre,
    row and column apart (ties go to the upper / left tile); a chip is kept when its tile was
    selected. G == T keeps exactly the selected tiles' own chips. With G > T the chips of a
    tile cover it and reach less than T/2 past its edges; with G < T a chip is kept when the
    tile at its centre was selected. ``data.random_shift`` still moves each read.

``data.restrict`` and ``data.sampling`` act on per-chip class histograms (unshifted grid
chips, decoded masks, cached with the chip grid): restrict drops chips (``balance.restrict``),
sampling gives each chip ``repeat factor * (1 - skip probability)`` expected draws per epoch.
Order: subset, then restrict, then sampling. Class weights of the loss keep coming from the
whole training scenes.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Sampler, SubsetRandomSampler, WeightedRandomSampler

from rsseg.classes import ClassTable
from rsseg.config import DataConfig
from rsseg.config.data import SamplingConfig
from rsseg.data.balance import (
    class_entropy,
    ebb_select,
    expand_indices,
    most_frequent,
    repeat_factors,
    restrict,
    sampling_weights,
    skip_probabilities,
    tile_histograms,
)
from rsseg.data.cache import Cache, digest
from rsseg.data.check import track
from rsseg.data.codecs import read_mask
from rsseg.data.index import scene_key
from rsseg.data.grid import grid_positions
from rsseg.data.tiles import ChipGrid, TileDataset
from rsseg.errors import RsSegError
from rsseg.io import atomic_write_text

log = logging.getLogger(__name__)
SUBSET_VERSION = 1


# --------------------------------------------------------------------------- rsseg data balance


def balance_subset(cfg: DataConfig, size: int, granularity: int | None = None, step: int = 1,
                   objective: str = "max", progress: bool = False) -> dict:
    """EBB over the G x G tiles of the training split (G defaults to ``data.tile_size``)."""
    from rsseg.data.datasets import get_source  # lazy: the registry imports every dataset layout

    g = cfg.tile_size if granularity is None else granularity
    source = get_source(cfg)
    source.prepare(progress=progress)
    classes = source.classes()
    scenes = source.scenes("train")
    hists, where = [], []
    for i, scene in enumerate(track(scenes, "cutting tiles", progress)):
        hist, origins = tile_histograms(source.read_mask(scene), g, classes.num_classes)
        hists.append(hist)
        where += [(i, int(r), int(c)) for r, c in origins]
    hist = np.concatenate(hists)
    chosen = ebb_select(hist, size, step, objective, classes.ignore)
    running = class_entropy(np.cumsum(hist[chosen], axis=0), classes.ignore) if len(chosen) else []
    own = class_entropy(hist[chosen], classes.ignore) if len(chosen) else []
    tiles = [
        {"scene": scenes[where[t][0]].id, "row": where[t][1], "col": where[t][2], "size": g,
         "entropy": float(own[k]), "cumulative_entropy": float(running[k])}
        for k, t in enumerate(chosen.tolist())
    ]
    before, after = hist.sum(0), hist[chosen].sum(0)
    return {
        "version": SUBSET_VERSION, "dataset": source.name, "root": str(source.root), "split": "train",
        "granularity": g, "tile_size": cfg.tile_size, "size": size, "step": step, "objective": objective,
        "tiles_total": len(hist), "selected": len(tiles), "classes": classes.to_dict(),
        "counts_before": before.tolist(), "counts_after": after.tolist(),
        "entropy_before": float(class_entropy(before, classes.ignore)),
        "entropy_after": float(class_entropy(after, classes.ignore)),
        "tiles": tiles,
    }


def write_balance(result: dict, out: Path) -> tuple[Path, Path]:
    """The tile list (JSON, usable as ``data.subset``) and the before/after prior plot beside it."""
    from rsseg.data.prior_plots import plot_priors_before_after  # lazy: matplotlib only when plots are written

    out = Path(out)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    title = (f"EBB ({result['objective']}): {result['selected']} of {result['tiles_total']} "
             f"tiles of {result['granularity']} px")
    png = plot_priors_before_after(result["counts_before"], result["counts_after"],
                                   ClassTable.from_dict(result["classes"]), out.with_suffix(".png"), title=title)
    return out, png


# --------------------------------------------------------------------------- data.subset


def load_subset(path: Path) -> dict[str, set[tuple[int, int, int]]]:
    """``{scene id: {(row, col, size), ...}}`` from a ``rsseg data balance`` list."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RsSegError(f"data.subset: file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise RsSegError(f"data.subset: cannot read {path}: {exc}") from None
    tiles = data.get("tiles") if isinstance(data, dict) else None
    if not isinstance(tiles, list):
        raise RsSegError(f"data.subset: {path} has no 'tiles' list (write it with `rsseg data balance`)")
    out: dict[str, set[tuple[int, int, int]]] = defaultdict(set)
    for k, tile in enumerate(tiles):
        try:
            row, col, size = (int(tile[key]) for key in ("row", "col", "size"))
            out[str(tile["scene"])].add((row, col, size))
        except (KeyError, TypeError, ValueError):
            raise RsSegError(f"data.subset: {path}: tile #{k} needs scene, row, col and size, got {tile!r}") from None
    if not out:
        raise RsSegError(f"data.subset: {path} selects no tile")
    return dict(out)


def _nearest(chips: np.ndarray, tiles: list[int], chip: int, tile: int, side: int) -> np.ndarray:
    """Origin of the tile whose centre is nearest each chip's centre (ties: the first tile)."""
    t = np.asarray(tiles)
    centres = t + min(tile, side) / 2
    return t[np.abs(chips[:, None] + min(chip, side) / 2 - centres[None, :]).argmin(1)]


def subset_mask(ds: TileDataset, tiles: dict[str, set[tuple[int, int, int]]], path: Path | str = "") -> np.ndarray:
    """Boolean mask over ``ds.chips``: the chips of the selected tiles (module docstring)."""
    origins = ds.chips.origins
    ids = {s.id: i for i, s in enumerate(ds.scenes)}
    missing = sorted(set(tiles) - set(ids))
    if missing:
        raise RsSegError(
            f"data.subset: {path} names scenes that are not training scenes here: {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''} (another dataset, split or exclusion list?)"
        )
    keep = np.zeros(len(origins), dtype=bool)
    for sid, chosen in tiles.items():
        i = ids[sid]
        h, w = ds.shapes[i]
        rows = np.flatnonzero(origins[:, 0] == i)
        for g in sorted({size for _, _, size in chosen}):
            grid_r, grid_c = grid_positions(h, g), grid_positions(w, g)
            picked = {(r, c) for r, c, size in chosen if size == g}
            off = [rc for rc in picked if rc[0] not in grid_r or rc[1] not in grid_c]
            if off:
                raise RsSegError(f"data.subset: {path}: tile {off[0]} of {g} px is not on the tile grid of "
                                 f"scene '{sid}' ({w}x{h}); was the list made for other data?")
            near_r = _nearest(origins[rows, 1], grid_r, ds.tile, g, h)
            near_c = _nearest(origins[rows, 2], grid_c, ds.tile, g, w)
            hit = np.fromiter(((r, c) in picked for r, c in zip(near_r.tolist(), near_c.tolist())), bool, len(rows))
            keep[rows[hit]] = True
    return keep


# --------------------------------------------------------------------------- restrict and sampling


def chip_histograms(ds: TileDataset, cache_dir: Path | None) -> np.ndarray:
    """(chips, classes) int64 pixel counts of every grid chip of ``ds`` (cached on the scenes)."""
    cache = Cache(cache_dir)
    name = f"chiphist-{digest([[scene_key(s, ds.codec) for s in ds.scenes], ds.tile])[:20]}.npy"
    origins = ds.chips.origins
    cached = cache.load_array(name)
    if cached is not None and cached.shape == (len(origins), ds.num_classes):
        return cached
    out = np.zeros((len(origins), ds.num_classes), dtype=np.int64)
    for i, scene in enumerate(ds.scenes):
        rows = np.flatnonzero(origins[:, 0] == i)
        if not rows.size or scene.mask is None:
            continue
        mask = read_mask(ds.reader, scene.mask, ds.codec)
        for j in rows:
            r, c = int(origins[j, 1]), int(origins[j, 2])
            out[j] = np.bincount(mask[r:r + ds.tile, c:c + ds.tile].ravel(), minlength=256)[: ds.num_classes]
    cache.save_array(name, out)
    return out


def class_ids(refs, classes: ClassTable, what: str) -> list[int]:
    """Class names or indices of a config list as indices."""
    out = []
    for ref in refs:
        if isinstance(ref, int) and 0 <= ref < classes.num_classes:
            out.append(ref)
        elif isinstance(ref, str) and ref in classes.names:
            out.append(classes.names.index(ref))
        else:
            raise RsSegError(f"{what}: unknown class {ref!r}; classes: {', '.join(classes.names)}")
    return out


def build_sampler(hist: np.ndarray, cfg: SamplingConfig, classes: ClassTable) -> Sampler:
    """The epoch sampler of ``data.sampling`` over chips with class histograms ``hist``."""
    ignore = classes.ignore
    if cfg.repeats is not None:
        ids = class_ids(list(cfg.repeats), classes, "data.sampling.repeats")
        factors = dict(zip(ids, cfg.repeats.values(), strict=True))
        repeats = repeat_factors(hist, factors, default=cfg.default, min_pixels=cfg.min_pixels, ignore=ignore)
    elif cfg.threshold is not None:
        repeats = repeat_factors(hist, threshold=cfg.threshold, min_pixels=cfg.min_pixels, ignore=ignore)
    else:
        repeats = np.ones(len(hist))
    skips = None
    if cfg.skip is not None:
        s = cfg.skip
        skips = skip_probabilities(hist, class_ids(s.majority, classes, "data.sampling.skip.majority"),
                                   share=s.share, p=s.p, ignore=ignore,
                                   protect=class_ids(s.protect, classes, "data.sampling.skip.protect"))
    if cfg.mode == "weighted":
        weights = sampling_weights(repeats, skips)
        draws = round(float(weights.sum()))
        if draws < 1:
            raise RsSegError("data.sampling: every chip has weight 0 (repeat factors 0 or skipped)")
        return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), draws, replacement=True)
    indices = expand_indices(repeats, skips, seed=cfg.seed)
    if not indices.size:
        raise RsSegError("data.sampling: the expanded chip list is empty (repeat factors 0 or every chip skipped)")
    return SubsetRandomSampler(indices.tolist())


def _balanced(keep: np.ndarray, hist: np.ndarray, balance: int | float,
              classes: ClassTable) -> tuple[np.ndarray, np.ndarray]:
    """``data.balance``: the EBB selection over the chips' own histograms (the chips are the
    tiles: ``rsseg data balance`` with granularity = ``data.tile_size`` picks the same ones)."""
    size = balance if isinstance(balance, int) else max(1, round(balance * len(keep)))
    if size >= len(keep):
        log.warning("data.balance=%s keeps all %d chips: nothing to balance", balance, len(keep))
        return keep, hist
    chosen = np.sort(ebb_select(hist, size, 1, "max", classes.ignore))
    log.info("data.balance: %d of %d chips, class entropy %.3f -> %.3f nats", size, len(keep),
             class_entropy(hist.sum(0), classes.ignore), class_entropy(hist[chosen].sum(0), classes.ignore))
    return keep[chosen], hist[chosen]


def select_training_chips(ds: TileDataset, cfg: DataConfig, classes: ClassTable,
                          cache_dir: Path | None = None) -> Sampler | None:
    """Apply ``data.subset`` and ``data.restrict`` to ``ds.chips``; the ``data.sampling`` sampler."""
    if cfg.subset is None and cfg.balance is None and cfg.restrict is None and cfg.sampling is None:
        return None
    total = len(ds)
    keep = np.arange(total)
    if cfg.subset is not None:
        keep = np.flatnonzero(subset_mask(ds, load_subset(cfg.subset), cfg.subset))
    hist = chip_histograms(ds, cache_dir)[keep] if cfg.balance or cfg.restrict or cfg.sampling else None
    if cfg.balance is not None:
        keep, hist = _balanced(keep, hist, cfg.balance, classes)
    if cfg.restrict is not None:
        rc = cfg.restrict
        checked = (most_frequent(hist.sum(0), rc.top_k, classes.ignore) if rc.top_k
                   else class_ids(rc.classes, classes, "data.restrict.classes") if rc.classes else None)
        kept = restrict(hist, rc.max_share, checked, classes.ignore)
        keep, hist = keep[kept], hist[kept]
    if not keep.size:
        raise RsSegError("data.subset / data.restrict leave no training chip")
    ds.chips = ChipGrid(ds.chips.origins[keep])
    log.info("training on %d of %d chips (data.subset / data.balance / data.restrict)", len(keep), total)
    return None if cfg.sampling is None else build_sampler(hist, cfg.sampling, classes)
