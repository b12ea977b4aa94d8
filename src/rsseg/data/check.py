"""`rsseg data check`: read every pixel of every scene once and report what would spoil training.

The training index (``rsseg.data.index``) stops at the first bad file and reads images
decimated. A check goes on past bad files and decodes every pixel of every image and mask,
since truncation only shows when decoding; GDAL reads a cut-off PNG as zeros without a word,
so files are also checked by ``rsseg.data.integrity`` (as the index does). Problems per scene:

- errors (listed for exclusion): missing_mask, unreadable, truncated, size_mismatch,
  unknown_values, bad_mask, empty_image (all black or all nodata, yet labelled pixels), nan
  (NaN or infinite pixels), band_count (differs from most scenes, or fewer than ``data.bands``);
- notes (reported only): no_label (mask pixels that decode to no label, with their raw
  values, e.g. Dubai's black borders), black_pixels (at least 1 % of an image black in every
  band), unlabelled (no counted class pixel at all), unknown values under
  ``unknown_colors: ignore``, empty images without labels, band counts that differ while
  ``data.bands`` is still satisfied, NaN/inf that ``data.nodata_values`` or the file's nodata covers.

``data.bands`` is checked against every scene, so a band no image has is an error in each.

Per-scene records (band sums, min/max, nodata, decoded class counts) are cached in the
dataset's cache folder keyed like the scene index, so ``rsseg data stats`` reuses them; a
check itself always reads again.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.config import DataConfig
from rsseg.data.cache import Cache, digest
from rsseg.data.codecs import ColorCodec, MaskCodec, rgb_key
from rsseg.data.index import nonfinite_problem, scene_key
from rsseg.data.integrity import verify_decode
from rsseg.data.rasters import RasterInfo, RasterReader, chunk_windows
from rsseg.errors import RsSegError
from rsseg.io import atomic_write_text

ERROR, NOTE = "error", "note"
RECORDS = "pixels.json"
RECORD_VERSION = 2  # 2: NaN/+inf/-inf counted apart ("nonfinite")
SHOWN_VALUES = 8  # raw values named per no-label / unknown note
BLACK_NOTE = 0.01  # share of image pixels black in every band worth a note (nodata fill?)


def track(items: Sequence, description: str, enabled: bool) -> Iterable:
    """A rich progress bar on stderr over ``items`` (or the items as they are)."""
    if not enabled:
        return items
    from rich.console import Console
    from rich.progress import track as rich_track

    return rich_track(items, description=description, transient=True, console=Console(stderr=True))


@dataclass(frozen=True)
class Problem:
    scene: str
    kind: str
    path: str
    detail: str
    severity: str = ERROR


@dataclass
class CheckReport:
    dataset: str
    root: str
    scenes: list[str]
    excluded: list[str]  # already left out by data.exclude (checked all the same)
    problems: list[Problem] = field(default_factory=list)
    band_counts: dict[int, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    def bad_entries(self) -> list[str]:
        """Exclusion entries: ids of scenes with errors (files that never became scenes cannot be
        excluded: listing fails on them first, so they are fixed on disk or by on_error: skip)."""
        return sorted({p.scene for p in self.errors if p.scene})

    @property
    def clean(self) -> bool:
        """No error in a scene that training would use (excluded scenes do not count)."""
        return all(p.scene in self.excluded for p in self.errors)

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset, "root": self.root, "checked": len(self.scenes), "clean": self.clean,
            "errors": len(self.errors), "notes": len(self.problems) - len(self.errors),
            "bad_scenes": self.bad_entries(), "excluded": self.excluded,
            "band_counts": {str(k): v for k, v in sorted(self.band_counts.items())},
            "problems": [asdict(p) for p in self.problems],
        }


# --------------------------------------------------------------------------- pixel pass


def _band_values(values: np.ndarray, acc: dict, b: int) -> None:
    """Add one band's valid values to the sums, min and max (a histogram for 8/16-bit ints)."""
    if values.dtype in (np.uint8, np.uint16):
        hist = np.bincount(values, minlength=1)
        present = np.flatnonzero(hist)
        if not present.size:
            return
        levels = np.arange(hist.size, dtype=np.float64)
        acc["sum"][b] += float(hist @ levels)
        acc["sumsq"][b] += float(hist @ levels**2)
        low, high = float(present[0]), float(present[-1])
    else:
        if not values.size:
            return
        v = values.astype(np.float64)
        acc["sum"][b] += v.sum()
        acc["sumsq"][b] += np.square(v).sum()
        low, high = float(v.min()), float(v.max())
    acc["min"][b] = min(acc["min"][b], low)
    acc["max"][b] = max(acc["max"][b], high)


def _image_stats(path: Path, info: RasterInfo, reader: RasterReader) -> dict:
    """Per-band sums over the valid pixels (not NaN, not the file's nodata), min, max, counts."""
    c = info.count
    acc = {k: np.zeros(c) for k in ("sum", "sumsq")}
    acc.update(min=np.full(c, np.inf), max=np.full(c, -np.inf))
    cnt = {k: np.zeros(c, dtype=np.int64) for k in ("nan", "nodata", "zero")}
    n = black = 0
    nonfinite = {"nan": 0, "inf": 0, "-inf": 0}
    nodata = info.nodata if info.nodata is not None and np.isfinite(info.nodata) else None
    for window in [None] if info.whole_file else chunk_windows(info.height, info.width):
        flat = reader.read(path, window).reshape(c, -1)
        n += flat.shape[1]
        zero = flat == 0
        cnt["zero"] += zero.sum(1)
        black += int(zero.all(0).sum())
        valid = np.isfinite(flat) if np.issubdtype(flat.dtype, np.floating) else None
        if valid is not None:
            cnt["nan"] += (~valid).sum(1)
            if not valid.all():
                nonfinite["nan"] += int(np.isnan(flat).sum())
                nonfinite["inf"] += int(np.isposinf(flat).sum())
                nonfinite["-inf"] += int(np.isneginf(flat).sum())
        if nodata is not None:
            hit = flat == nodata
            cnt["nodata"] += hit.sum(1)
            valid = ~hit if valid is None else valid & ~hit
        for b in range(c):
            _band_values(flat[b] if valid is None else flat[b][valid[b]], acc, b)
    out = {k: [None if not np.isfinite(v) else float(v) for v in a] for k, a in acc.items()}
    return {**out, **{k: a.tolist() for k, a in cnt.items()}, "n": n, "black": black, "nonfinite": nonfinite}


def _raw_keys(raw: np.ndarray, info: RasterInfo, codec: MaskCodec) -> np.ndarray | None:
    """The value each mask pixel was written with (a 24-bit colour for colour masks)."""
    if isinstance(codec, ColorCodec):
        if raw.dtype != np.uint8:
            return None
        if raw.shape[0] == 1 and info.colormap:
            lut = np.zeros(256, dtype=np.int64)
            for i, rgba in info.colormap.items():
                if 0 <= i < 256:
                    lut[i] = rgb_key(rgba[:3])
            return lut[raw[0]]
        rgb = np.repeat(raw[:1], 3, axis=0) if raw.shape[0] == 1 else raw[:3]
        return (rgb[0].astype(np.int64) << 16) | (rgb[1].astype(np.int64) << 8) | rgb[2]
    return raw[0] if np.issubdtype(raw.dtype, np.integer) else None


def _mask_stats(path: Path, info: RasterInfo, codec: MaskCodec, reader: RasterReader) -> dict:
    """Decoded value counts (classes, 255 no label, 254 unknown) and the raw values behind them."""
    hist = np.zeros(256, dtype=np.int64)
    unknown: Counter = Counter()
    no_label: Counter = Counter()
    for window in [None] if info.whole_file else chunk_windows(info.height, info.width):
        raw = reader.read(path, window, codec.bands(info))
        decoded, bad = codec.decode(raw, info, path)
        hist += np.bincount(decoded.ravel(), minlength=256)
        unknown.update(bad)
        none = decoded == IGNORE_INDEX
        keys = _raw_keys(raw, info, codec) if none.any() else None
        if keys is not None:
            values, counts = np.unique(keys[none], return_counts=True)
            no_label.update(dict(zip(values.tolist(), counts.tolist(), strict=True)))

    def named(counter: Counter) -> dict[str, int]:
        return {codec.describe(int(v)): int(n) for v, n in counter.most_common(SHOWN_VALUES)}

    return {"counts": {str(i): int(n) for i, n in enumerate(hist) if n}, "unknown": named(unknown),
            "unknown_px": int(sum(unknown.values())), "no_label": named(no_label)}


def read_scene(scene, codec: MaskCodec, reader: RasterReader) -> dict:
    """A JSON-able record of one scene's pixels; file problems listed as [kind, path, detail]."""
    rec: dict = {"v": RECORD_VERSION, "id": scene.id, "image": str(scene.image),
                 "mask": str(scene.mask or ""), "problems": []}
    try:
        info = reader.info(scene.image)
    except RsSegError as exc:
        rec["problems"].append(["unreadable", str(scene.image), str(exc)])
        info = None
    if info is not None:
        rec.update(height=info.height, width=info.width, count=info.count, dtype=info.dtype, nodata=info.nodata)
        try:  # a truncated file first: its stats would be of GDAL's stand-in rows
            verify_decode(Path(scene.image), info)
            rec["bands"] = _image_stats(scene.image, info, reader)
        except RsSegError as exc:
            rec["problems"].append(["truncated", str(scene.image), str(exc)])
    if scene.mask is None:
        return rec
    try:
        minfo = reader.info(scene.mask)
    except RsSegError as exc:
        rec["problems"].append(["unreadable", str(scene.mask), str(exc)])
        return rec
    if info is not None and (minfo.height, minfo.width) != (info.height, info.width):
        size = f"mask is {minfo.width}x{minfo.height} but image {scene.image} is {info.width}x{info.height}"
        rec["problems"].append(["size_mismatch", str(scene.mask), size])
    try:
        verify_decode(Path(scene.mask), minfo)
        rec.update(_mask_stats(Path(scene.mask), minfo, codec, reader))
    except RsSegError as exc:
        kind = "truncated" if "truncated" in str(exc) else "bad_mask"
        rec["problems"].append([kind, str(scene.mask), str(exc)])
    return rec


def _record_key(scene, codec: MaskCodec) -> str | None:
    try:
        return digest([scene_key(scene, codec), RECORD_VERSION])
    except RsSegError:  # a file that cannot even be stat'ed: read (and reported) every time
        return None


def pixel_records(source, scenes: Sequence, *, force: bool = False, progress: bool = False,
                  description: str = "reading pixels") -> list[dict]:
    """One record per scene, read now (``force`` or not cached) or recalled from the cache."""
    cache = Cache(source.cache_dir())
    stored: dict = (cache.load_json(RECORDS) or {}).get("records", {})
    codec, reader = source.codec, RasterReader(decoded_cache=0)
    out, keys, changed = [], set(), False
    for scene in track(scenes, description, progress):
        key = _record_key(scene, codec)
        rec = None if force or key is None else stored.get(key)
        if rec is None:
            rec = read_scene(scene, codec, reader)
            reader.close()
            if key is not None:
                stored[key], changed = rec, True
        keys.add(key)
        out.append(rec)
    if changed:
        images = {r["image"] for r in out}
        stored = {k: r for k, r in stored.items() if k in keys or r.get("image") not in images}
        cache.save_json(RECORDS, {"records": stored})
    return out


# --------------------------------------------------------------------------- the check


def labelled_pixels(rec: dict, classes: ClassTable) -> int:
    """Pixels of counted classes (not ignored, not no label) in a record's mask."""
    return sum(n for v, n in rec.get("counts", {}).items() if int(v) in classes.evaluated)


def _scene_problems(rec: dict, classes: ClassTable, codec: MaskCodec, covered: list[str]) -> list[Problem]:
    sid, image = rec["id"], rec["image"]
    out = [Problem(sid, kind, path, detail) for kind, path, detail in rec["problems"]]
    if rec.get("unknown_px"):
        shown = ", ".join(f"{v} x {n} px" for v, n in rec["unknown"].items())
        detail = f"{rec['unknown_px']} px of {codec.noun}s not in the class table: {shown}"
        if codec.unknown == "ignore":
            out.append(Problem(sid, "unknown_values", rec["mask"], detail + " (treated as no label)", NOTE))
        else:
            out.append(Problem(sid, "unknown_values", rec["mask"], detail))
    bands = rec.get("bands")
    labelled = labelled_pixels(rec, classes)
    if bands:
        n = bands["n"]
        bad = sum(bands["nan"])
        if bad:
            detail = f"{bad} NaN/infinite values ({bad / (n * len(bands['nan'])):.2%})"
            file_nodata = rec.get("nodata")
            declared = str(file_nodata) if isinstance(file_nodata, float) and not np.isfinite(file_nodata) else None
            found = {"image": image, "nonfinite": bands["nonfinite"], "nodata": declared}
            uncovered = nonfinite_problem(found, covered)
            if uncovered:  # the hint after "; ": fix the file or set data.nodata_values
                out.append(Problem(sid, "nan", image, detail + "; " + uncovered.split("; ", 1)[-1]))
            else:
                detail += " (no data: data.nodata_values or the file's nodata)"
                out.append(Problem(sid, "nan", image, detail, NOTE))
        black = bands["black"] == n
        nodata = all(a + b == n for a, b in zip(bands["nodata"], bands["nan"], strict=True))
        if not black and bands["black"] >= BLACK_NOTE * n:
            out.append(Problem(sid, "black_pixels", image, f"{bands['black'] / n:.2%} of the pixels are black "
                               "in every band (nodata fill? set the file's nodata value)", NOTE))
        if black or nodata:
            what = "all black (every band 0)" if black else "all nodata"
            if labelled:
                out.append(Problem(sid, "empty_image", image, f"image is {what} but its mask has {labelled} labelled px"))
            else:
                out.append(Problem(sid, "empty_image", image, f"image is {what} (mask has no labels either)", NOTE))
    if "counts" in rec:
        total = sum(rec["counts"].values())
        none = rec["counts"].get(str(IGNORE_INDEX), 0)
        if none:
            values = ", ".join(f"{v} x {k} px" for v, k in rec.get("no_label", {}).items())
            out.append(Problem(sid, "no_label", rec["mask"], f"{none} px ({none / total:.2%}) decode to no label"
                               + (f": {values}" if values else ""), NOTE))
        if not labelled:
            out.append(Problem(sid, "unlabelled", rec["mask"], "no pixel of a counted class", NOTE))
    return out


def missing_bands(count: int, bands: list[int] | None) -> str | None:
    """"4 bands; data.bands asks for band 7 ([1, 2, 3, 7])" when ``bands`` reaches past ``count``."""
    missing = [b for b in bands or [] if b > count]
    if not missing:
        return None
    return (f"{count} bands; data.bands asks for band{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(str, missing))} ({bands})")


def _band_problems(records: list[dict], bands: list[int] | None) -> tuple[list[Problem], Counter]:
    """Every scene is checked against ``data.bands`` (a band no image has is an error everywhere)."""
    counts = Counter(r["count"] for r in records if "count" in r)
    usual = counts.most_common(1)[0][0] if counts else 0
    out = []
    for r in records:
        n = r.get("count")
        if n is None:
            continue
        gap = missing_bands(n, bands)
        if gap:
            out.append(Problem(r["id"], "band_count", r["image"], gap))
        elif n == usual:
            continue
        elif bands:
            out.append(Problem(r["id"], "band_count", r["image"], f"{n} bands (most scenes: {usual})", NOTE))
        else:
            out.append(Problem(r["id"], "band_count", r["image"], f"{n} bands but most scenes have {usual} "
                               "(set data.bands to read the same bands from every scene)"))
    return out, counts


def check_data(cfg: DataConfig, *, progress: bool = False) -> CheckReport:
    """Check every listed scene, those ``data.exclude`` leaves out included (marked as such)."""
    from rsseg.data.datasets import get_source  # lazy: the registry imports every dataset layout

    everything = get_source(cfg.model_copy(update={"exclude": None, "on_error": "skip"}))
    everything.prepare(progress=progress)
    scenes = everything.all_scenes()
    used = {s.id for s in get_source(cfg.model_copy(update={"on_error": "skip"})).all_scenes()}
    report = CheckReport(everything.name, str(everything.root), [s.id for s in scenes],
                         sorted(s.id for s in scenes if s.id not in used))
    for skipped in everything.skipped:  # files that never became scenes (e.g. no mask)
        kind = "missing_mask" if "no mask" in skipped.problem else "listing"
        hint = " (fix it on disk or set data.on_error: skip; an exclusion list cannot drop it)"
        report.problems.append(Problem("", kind, skipped.path, skipped.problem + hint))
    records = pixel_records(everything, scenes, force=True, progress=progress, description="checking")
    classes, codec = everything.classes(), everything.codec
    covered = [v for v in cfg.nodata_values if isinstance(v, str)]  # nan/inf of float images
    for rec in records:
        report.problems.extend(_scene_problems(rec, classes, codec, covered))
    band_problems, report.band_counts = _band_problems(records, everything.band_indices())
    report.problems.extend(band_problems)
    order = {s: i for i, s in enumerate(report.scenes)}
    report.problems.sort(key=lambda p: (order.get(p.scene, -1), p.severity != ERROR, p.kind))
    return report


def write_report(report: CheckReport, path: Path) -> Path:
    atomic_write_text(Path(path), json.dumps(report.to_dict(), indent=2) + "\n")
    return Path(path)


def write_exclusions(report: CheckReport, path: Path, current: Path | None = None) -> list[str]:
    """Write the ``data.exclude`` list: every scene with an error plus the entries of ``current``
    (the config's data.exclude), so re-running a check never forgets an exclusion."""
    entries = set(report.bad_entries())
    if current is not None and Path(current).exists():
        try:
            old = json.loads(Path(current).read_text())
        except (OSError, ValueError) as exc:
            raise RsSegError(f"data.exclude: cannot read {current}: {exc}") from None
        if not isinstance(old, list):
            raise RsSegError(f"data.exclude: {current} must hold a JSON list of scene ids or image paths")
        entries |= {str(x) for x in old}
    listed = sorted(entries)
    atomic_write_text(Path(path), json.dumps(listed, indent=2) + "\n")
    return listed
