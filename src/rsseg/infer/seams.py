"""Seam score: do tile boundaries show in a class map?

Neighbouring pixels disagree at a certain rate everywhere (real class edges). Tiling
artefacts add disagreements exactly where tiles meet. The score is the rate of label
changes between neighbours that straddle a tile boundary divided by the rate between all
other neighbours: about 1 when seams are invisible, well above 1 when they show.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rsseg.classes import IGNORE_INDEX


@dataclass(frozen=True)
class SeamScore:
    score: float
    boundary_rate: float
    interior_rate: float
    boundary_pairs: int
    interior_pairs: int

    def as_dict(self) -> dict:
        return asdict(self)


def _axis_counts(a: np.ndarray, b: np.ndarray, on_seam: np.ndarray, axis: int) -> np.ndarray:
    """[boundary changes, boundary pairs, interior changes, interior pairs] along one axis."""
    valid = (a != IGNORE_INDEX) & (b != IGNORE_INDEX)
    changed = (a != b) & valid
    other = 1 - axis  # sum over the other axis first: per-position counts
    ch, n = changed.sum(axis=other), valid.sum(axis=other)
    return np.array([ch[on_seam].sum(), n[on_seam].sum(), ch[~on_seam].sum(), n[~on_seam].sum()],
                    dtype=np.int64)


def seam_score(classes: np.ndarray, tile_y: int, tile_x: int | None = None,
               offset: tuple[int, int] = (0, 0)) -> SeamScore:
    """Seam score of an (H, W) class map tiled every ``tile_y`` x ``tile_x`` px from
    ``offset``; pixels labelled 255 (nodata) are left out."""
    tile_x = tile_x or tile_y
    h, w = classes.shape
    rows_on_seam = (np.arange(1, h) - offset[0]) % tile_y == 0  # pair (y-1, y), y on a boundary
    cols_on_seam = (np.arange(1, w) - offset[1]) % tile_x == 0
    counts = _axis_counts(classes[:-1], classes[1:], rows_on_seam, axis=0)
    counts += _axis_counts(classes[:, :-1], classes[:, 1:], cols_on_seam, axis=1)
    b_ch, b_n, i_ch, i_n = (int(v) for v in counts)
    b_rate = b_ch / b_n if b_n else 0.0
    i_rate = i_ch / i_n if i_n else 0.0
    score = b_rate / i_rate if i_rate else (1.0 if b_rate == 0 else float("inf"))
    return SeamScore(score, b_rate, i_rate, b_n, i_n)
