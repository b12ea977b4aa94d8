"""`rsseg data stats`: class priors per split and per-band statistics, exact over every pixel.

Class priors (seed 000 Figs. 2-3) are the decoded pixel counts per class, as shares of all
labelled pixels (ignored classes included) and of the counted classes only (ignored classes
left out); no-label pixels are counted apart. Band statistics are over the valid pixels of
every image (not NaN, not the file's declared nodata value); ``nodata_share`` is (nodata +
NaN) / pixels and ``zero_share`` the pixels equal to 0 (black fill where no nodata value is
declared). Both come from the pixel records cached by ``rsseg.data.check`` (the first run
reads every pixel once). Scenes whose files cannot be read whole are left out and listed; a
``data.bands`` band a scene lacks is refused (left out and listed under ``data.on_error: skip``,
unless no scene has it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from rsseg.classes import ClassTable
from rsseg.config import DataConfig
from rsseg.data.balance import class_entropy
from rsseg.data.check import missing_bands, pixel_records
from rsseg.data.codecs import UNKNOWN
from rsseg.errors import RsSegError
from rsseg.io import atomic_write_text

GROUPS = ("train", "val", "test", "all")


def class_priors(records: list[dict], classes: ClassTable) -> dict:
    """Pixel counts and shares per class over ``records``' masks."""
    counts = np.zeros(256, dtype=np.int64)
    for rec in records:
        for value, n in rec.get("counts", {}).items():
            counts[int(value)] += n
    k = classes.num_classes
    labelled, counted = int(counts[:k].sum()), int(counts[classes.evaluated].sum())
    rows = []
    for i, name in enumerate(classes.names):
        ignored = i in classes.ignore
        rows.append({
            "class": name, "index": i, "ignored": ignored, "pixels": int(counts[i]),
            "share": float(counts[i] / labelled) if labelled else 0.0,
            "share_counted": None if ignored else (float(counts[i] / counted) if counted else 0.0),
        })
    return {
        "scenes": len(records), "pixels": int(counts.sum()), "labelled": labelled, "counted": counted,
        "no_label": int(counts[255] + counts[UNKNOWN]),
        "entropy": float(class_entropy(counts[:k])),
        "entropy_counted": float(class_entropy(counts[:k], classes.ignore)),
        "classes": rows,
    }


def band_statistics(records: list[dict], bands: list[int] | None, names: list[str] | None) -> list[dict]:
    """Mean, std, min, max and nodata/zero shares per band (1-based ``bands``; None = all)."""
    usable = [r for r in records if "bands" in r]
    if not usable:
        return []
    if bands is None:
        usual = max({r["count"] for r in usable}, key=[r["count"] for r in usable].count)
        usable = [r for r in usable if r["count"] == usual]
        bands = list(range(1, usual + 1))
    else:
        usable = [r for r in usable if r["count"] >= max(bands)]
    out = []
    for b in bands:
        i = b - 1

        def total(key: str, i: int = i) -> float:
            return float(sum(r["bands"][key][i] for r in usable))

        n = sum(r["bands"]["n"] for r in usable)
        valid = n - total("nodata") - total("nan")
        mean = total("sum") / valid if valid else math.nan
        var = total("sumsq") / valid - mean**2 if valid else math.nan
        lows = [r["bands"]["min"][i] for r in usable if r["bands"]["min"][i] is not None]
        highs = [r["bands"]["max"][i] for r in usable if r["bands"]["max"][i] is not None]
        name = names[i] if names and i < len(names) else f"band {b}"
        out.append({
            "band": b, "name": name, "scenes": len(usable), "pixels": n,
            "mean": mean if valid else None, "std": math.sqrt(max(var, 0.0)) if valid else None,
            "min": min(lows, default=None), "max": max(highs, default=None),
            "nodata_share": (total("nodata") + total("nan")) / n if n else 0.0,
            "zero_share": total("zero") / n if n else 0.0,
        })
    return out


def data_stats(cfg: DataConfig, *, progress: bool = False) -> dict:
    """Priors and band statistics of every split and of all scenes (``data.exclude`` honoured)."""
    from rsseg.data.datasets import get_source  # lazy: the registry imports every dataset layout

    source = get_source(cfg)
    source.prepare(progress=progress)
    scenes = source.all_scenes()
    records = pixel_records(source, scenes, progress=progress)
    left_out = [{"scene": r["id"], "problem": r["problems"][0][2]} for r in records if r["problems"]]
    ok = {r["id"]: r for r in records if not r["problems"]}
    bands = source.band_indices()
    short = [(r, gap) for r in ok.values() if (gap := missing_bands(r["count"], bands))]
    if short and (cfg.on_error == "raise" or len(short) == len(ok)):  # as training would refuse them
        r, gap = short[0]
        raise RsSegError(f"{r['image']}: {gap}; {len(short)} of {len(ok)} readable scenes lack it: fix data.bands "
                         "(or set data.on_error: skip to leave those scenes out)")
    for r, gap in short:  # data.on_error: skip: still counted in the priors, left out of the band statistics
        left_out.append({"scene": r["id"], "problem": gap})
    splits = source.splits()
    members = {**{name: [s.id for s in splits[name]] for name in GROUPS[:3]}, "all": [s.id for s in scenes]}
    classes = source.classes()
    names = source.band_names()
    result: dict = {
        "dataset": source.name, "root": str(source.root), "classes": classes.to_dict(),
        "bands_read": bands, "left_out": left_out, "priors": {}, "bands": {},
    }
    for group in GROUPS:
        chosen = [ok[i] for i in members[group] if i in ok]
        result["priors"][group] = class_priors(chosen, classes)
        result["bands"][group] = band_statistics(chosen, bands, names)
    return result


def write_stats(result: dict, out_dir: Path) -> list[Path]:
    """stats.json and the prior bar charts (``priors-<split>.png``; ``-counted`` without ignored classes)."""
    from rsseg.data.prior_plots import plot_class_priors  # lazy: matplotlib only when plots are written

    out_dir = Path(out_dir)
    path = out_dir / "stats.json"
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    written = [path]
    classes = ClassTable.from_dict(result["classes"])
    for group, priors in result["priors"].items():
        counts = [row["pixels"] for row in priors["classes"]]
        title = f"Class priors: {group} ({priors['scenes']} scenes)"
        if priors["labelled"]:
            written.append(plot_class_priors(counts, classes, out_dir / f"priors-{group}.png", title=title))
        if classes.ignore and priors["counted"]:
            written.append(plot_class_priors(counts, classes, out_dir / f"priors-{group}-counted.png",
                                             title=f"{title}, ignored classes left out", ignore_shown=False))
    return written
