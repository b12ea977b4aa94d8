"""Per-pixel confidence and D4-TTA disagreement maps, stored like the probabilities.

All three confidences grow with certainty, so one colour ramp reads them all:

* ``max``: the largest softmax probability;
* ``margin``: the largest minus the second largest probability;
* ``entropy``: ``1 - H(p) / log K`` (1 for a one-hot softmax, 0 for a uniform one).

The disagreement (``--tta``) is the fraction of the 8 D4 views whose argmax differs from the
final (averaged) class. Both are uint8 ``round(254 x)``, 255 nodata (``writers.PROB_SCALE``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.gis.qml import class_map_style, confidence_style, write_style
from rsseg.infer.reader import SceneInfo
from rsseg.infer.writers import PROB_SCALE, WRITE_ERRORS, RowWriter, probability_bytes, write_error

CONFIDENCES = ("max", "margin", "entropy")


def confidence(probs: np.ndarray, kind: str = "max") -> np.ndarray:
    """(K, ...) probabilities -> (...) float32 confidence in [0, 1] (see the module doc)."""
    p = np.asarray(probs, dtype=np.float32)
    if kind == "max":
        return p.max(axis=0)
    if kind == "margin":
        if p.shape[0] < 2:
            return np.ones(p.shape[1:], np.float32)
        top2 = np.partition(p, p.shape[0] - 2, axis=0)[-2:]
        return top2[1] - top2[0]
    if kind == "entropy":
        if p.shape[0] < 2:
            return np.ones(p.shape[1:], np.float32)
        h = -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=0)
        return np.clip(1.0 - h / np.log(p.shape[0]), 0.0, 1.0).astype(np.float32)
    raise ValueError(f"unknown confidence '{kind}'")


def disagreement(views: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(V, ...) per-view argmax and the final (...) classes -> fraction of views that differ."""
    return (views != classes[None]).mean(axis=0, dtype=np.float32)


def to_bytes(values: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Float maps in [0, 1] (or their bytes) -> stored uint8, 255 where the class map is nodata."""
    out = values.copy() if values.dtype == np.uint8 else probability_bytes(values)
    out[classes == IGNORE_INDEX] = IGNORE_INDEX
    return out


def confidence_writer(tmp: Path, final: Path, info: SceneInfo, label: str, overviews: bool = False) -> RowWriter:
    """One uint8 band, round(254 c), nodata 255, scale 1/254, described as ``label``."""
    w = RowWriter(tmp, final, info, 1, "average" if overviews else None)
    try:
        w.ds.scales = (1 / PROB_SCALE,)
        w.ds.descriptions = (label,)
    except WRITE_ERRORS as exc:
        w.abort()
        raise write_error(final, exc) from exc
    return w


def style_paths(paths: dict[str, Path]) -> dict[str, Path]:
    """QGIS sidecars: for the class map, and for a confidence or disagreement map."""
    return {f"{k}_qml": paths[k].with_suffix(".qml") for k in ("classes", "confidence", "disagreement") if k in paths}


def write_styles(paths: dict[str, Path], classes: ClassTable) -> None:
    """The ``style_paths`` sidecars (``rsseg.gis.qml``), so QGIS opens the maps styled."""
    for key in style_paths(paths):
        tif = paths[key.removesuffix("_qml")]
        style = (class_map_style(classes.names, classes.colors) if key == "classes_qml"
                 else confidence_style(key.removesuffix("_qml")))
        try:
            write_style(tif, style)
        except OSError as exc:
            raise write_error(paths[key], exc) from exc
