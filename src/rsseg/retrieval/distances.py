"""Distances between signatures and the seed's spatial scores between masks (seed 000 §5.2).

EMD with ground distance ``D_ij = |pos(i) - pos(j)|`` over classes in a ground order is the
L1 distance between cumulative histograms (the 1-D Mallows case): exact, O(C). Any other
ground distance goes through POT's network simplex (``ot.emd2``). mIoU, weighted IoU and
pixel precision compare masks pixel by pixel: the "spatial" scores the seed argues against.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rsseg.errors import RsSegError


def _as_hist(h: np.ndarray, name: str) -> np.ndarray:
    h = np.asarray(h, dtype=np.float64)
    if h.ndim == 0 or np.any(h < 0) or not np.all(np.isfinite(h)):
        raise RsSegError(f"{name}: a histogram needs finite non-negative values")
    return h


def order_ground_distance(order: Sequence[int]) -> np.ndarray:
    """(C, C) ground distance ``|pos(i) - pos(j)|`` for columns listed in ground order."""
    pos = np.empty(len(order), dtype=np.float64)
    pos[np.asarray(order, dtype=np.intp)] = np.arange(len(order))
    return np.abs(pos[:, None] - pos[None, :])


def emd_ordered(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Closed-form EMD of normalised histograms already in ground order, ``D_ij = |i - j|``.

    Broadcasts over leading axes: ``sum_k |A_k - B_k|`` over the cumulative histograms.
    """
    a, b = _as_hist(a, "a"), _as_hist(b, "b")
    if a.shape[-1] != b.shape[-1]:
        raise RsSegError(f"histograms have {a.shape[-1]} and {b.shape[-1]} classes")
    diff = np.cumsum(a, axis=-1) - np.cumsum(b, axis=-1)
    return np.abs(diff[..., :-1]).sum(axis=-1)


def emd_cumulative(ca: np.ndarray, cb: np.ndarray) -> np.ndarray:
    """EMD between cumulative histograms (ground order): their L1 distance, in float64."""
    return np.abs(np.asarray(ca, np.float64) - np.asarray(cb, np.float64)).sum(axis=-1)


def emd_pot(a: np.ndarray, b: np.ndarray, ground: np.ndarray) -> float:
    """EMD of two histograms under any (C, C) ground distance, exactly via ``ot.emd2``."""
    import ot

    a, b = _as_hist(a, "a"), _as_hist(b, "b")
    ground = np.asarray(ground, dtype=np.float64)
    c = a.shape[-1]
    if a.shape != (c,) or b.shape != (c,) or ground.shape != (c, c):
        raise RsSegError(
            f"EMD needs two (C,) histograms and a (C, C) ground distance; got {a.shape}, "
            f"{b.shape}, {ground.shape}"
        )
    sa, sb = a.sum(), b.sum()
    if sa <= 0 or sb <= 0:
        raise RsSegError("EMD of an empty histogram (no pixel of an evaluated class)")
    return float(ot.emd2(a / sa, b / sb, ground))


def emd(
    a: np.ndarray, b: np.ndarray, *, ground: np.ndarray | None = None,
    order: Sequence[int] | None = None,
) -> float:
    """EMD between histograms in signature-column order.

    Default: closed form with the columns taken in ``order`` (``None``: as they are). With a
    ``ground`` matrix (over signature columns): POT.
    """
    if ground is not None:
        return emd_pot(a, b, ground)
    a, b = _as_hist(a, "a"), _as_hist(b, "b")
    if order is not None:
        perm = np.asarray(order, dtype=np.intp)
        a, b = a[..., perm], b[..., perm]
    return float(emd_ordered(a / a.sum(), b / b.sum()))


# --------------------------------------------------------------------------- spatial scores


def confusions(reference: np.ndarray, masks: np.ndarray, lut: np.ndarray, c: int) -> np.ndarray:
    """(H, W) reference and (N, H, W) masks -> (N, C, C) pixel counts, rows: reference.

    ``lut`` maps mask values to columns 0..C-1, or C for pixels that do not count; a pixel
    counts only where both masks have an evaluated class.
    """
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.shape[1:] != np.shape(reference):
        raise RsSegError(f"masks of shape {masks.shape[1:]} and {np.shape(reference)} differ")
    ref = lut[np.asarray(reference, dtype=np.uint8)].ravel()
    other = lut[masks.astype(np.uint8, copy=False)].reshape(masks.shape[0], -1)
    codes = ref[None, :] * (c + 1) + other
    n = masks.shape[0]
    codes = codes + (np.arange(n, dtype=np.intp) * (c + 1) ** 2)[:, None]
    counts = np.bincount(codes.ravel(), minlength=n * (c + 1) ** 2)
    return counts.reshape(n, c + 1, c + 1)[:, :c, :c]


def spatial_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """(N, C, C) confusions -> ``miou``, ``wiou`` and ``pixel_precision`` (each (N,), in 0..1).

    mIoU averages the IoU of the classes present in either mask; weighted IoU weights each
    class by its share of the reference; pixel precision is the share of agreeing pixels.
    Masks with no common valid pixel score 0.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    ref, other = cm.sum(axis=2), cm.sum(axis=1)
    union = ref + other - tp
    iou = np.divide(tp, union, out=np.zeros_like(tp), where=union > 0)
    present = (union > 0).sum(axis=1)
    miou = np.divide(iou.sum(axis=1), present, out=np.zeros(len(cm)), where=present > 0)
    total = cm.sum(axis=(1, 2))
    weights = np.divide(ref, total[:, None], out=np.zeros_like(ref), where=total[:, None] > 0)
    wiou = (weights * iou).sum(axis=1)
    pixel = np.divide(tp.sum(axis=1), total, out=np.zeros(len(cm)), where=total > 0)
    return {"miou": miou, "wiou": wiou, "pixel_precision": pixel}
