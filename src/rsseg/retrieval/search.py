"""Exact k-nearest-neighbour search: EMD over cumulative histograms, L1/L2 over embeddings.

EMD search (``EmdSearcher``) works on the int32 fixed-point cumulative histograms, so every
distance is an exact integer: results equal brute force bit for bit. It prunes with a
1-Lipschitz projection: ``s(x) = sum_k x_k`` obeys ``|s(a) - s(b)| <= ||a - b||_1``, so with
rows sorted by ``s`` only the contiguous slice ``|s - s(q)| <= r`` (r: current k-th distance)
can hold a result. The slice is scanned outwards in blocks while r shrinks. Worst case (all
``s`` equal) it is a blocked brute force. Ties are broken by row, i.e. by tile id.
"""

from __future__ import annotations

import numpy as np

from rsseg.errors import RsSegError
from rsseg.retrieval.signatures import SCALE, to_fixed

BLOCK = 32768


def _topk(dist: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest (distance, row) pairs in (distance, row) order."""
    if len(dist) > k:
        kth = np.partition(dist, k - 1)[k - 1]
        keep = dist <= kth
        dist, rows = dist[keep], rows[keep]
    order = np.lexsort((rows, dist))[:k]
    return dist[order], rows[order]


class EmdSearcher:
    """Exact EMD k-NN over (N, C) float32 cumulative histograms on the ``QUANTUM`` grid."""

    def __init__(self, cumulative: np.ndarray) -> None:
        fixed = to_fixed(cumulative)
        if fixed.ndim == 2 and fixed.shape[1] > 127:  # int32 sums would overflow
            fixed = fixed.astype(np.int64)
        if fixed.ndim != 2 or fixed.shape[1] < 1:
            raise RsSegError(f"cumulative histograms must be (N, C), got {fixed.shape}")
        key = fixed.sum(axis=1, dtype=np.int64)
        self.order = np.argsort(key, kind="stable")
        self.key = key[self.order]
        # one contiguous int32 column per class, rows sorted by key
        self.cols = np.ascontiguousarray(fixed[self.order].T)
        self.n, self.dim = fixed.shape

    @property
    def nbytes(self) -> int:
        return self.cols.nbytes + self.key.nbytes + self.order.nbytes

    def _block(self, q: np.ndarray, lo: int, hi: int) -> np.ndarray:
        d = np.abs(self.cols[0, lo:hi] - q[0])
        buf = np.empty_like(d)
        for j in range(1, self.dim):
            np.subtract(self.cols[j, lo:hi], q[j], out=buf)
            np.abs(buf, out=buf)
            d += buf
        return d

    def search(self, query: np.ndarray, k: int, exclude: set[int] | frozenset = frozenset()) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative histogram (C,) -> (float64 EMDs, rows), k nearest, ties by row."""
        q = to_fixed(np.asarray(query, dtype=np.float32).reshape(-1)).astype(self.cols.dtype)
        if q.shape[0] != self.dim:
            raise RsSegError(f"query has {q.shape[0]} classes, the index {self.dim}")
        kk = min(self.n, k + len(exclude))
        if kk <= 0:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        sq = int(q.sum(dtype=np.int64))
        p = int(np.searchsorted(self.key, sq))
        half = max(kk, BLOCK // 8)
        lo, hi = max(0, p - half), min(self.n, p + half)
        best_d, best_r = _topk(self._block(q, lo, hi).astype(np.int64), self.order[lo:hi], kk)
        r = int(best_d[-1]) if len(best_d) == kk else None
        while True:
            left = int(np.searchsorted(self.key, sq - r, "left")) if r is not None else 0
            right = int(np.searchsorted(self.key, sq + r, "right")) if r is not None else self.n
            if lo <= left and hi >= right:
                break
            # extend towards the side whose next row is closer in key (both when equal)
            gap_l = sq - int(self.key[lo - 1]) if lo > left else None
            gap_r = int(self.key[hi]) - sq if hi < right else None
            if gap_r is None or (gap_l is not None and gap_l <= gap_r):
                nlo = max(left, lo - BLOCK)
                d, rows = self._block(q, nlo, lo), self.order[nlo:lo]
                lo = nlo
            else:
                nhi = min(right, hi + BLOCK)
                d, rows = self._block(q, hi, nhi), self.order[hi:nhi]
                hi = nhi
            if r is not None:
                keep = d <= r
                d, rows = d[keep], rows[keep]
            best_d, best_r = _topk(np.concatenate([best_d, d]), np.concatenate([best_r, rows]), kk)
            if len(best_d) == kk:
                r = int(best_d[-1])
        dist, rows = best_d.astype(np.float64) / SCALE, best_r
        if exclude:
            keep = ~np.isin(rows, list(exclude))
            dist, rows = dist[keep], rows[keep]
        return dist[:k], rows[:k].astype(np.int64)


def brute_force_emd(cumulative: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: float64 L1 to every row, sorted by (distance, row). Exact on the grid."""
    x = np.asarray(cumulative, dtype=np.float64)
    q = np.asarray(query, dtype=np.float32).astype(np.float64).reshape(1, -1)
    d = np.abs(x - q).sum(axis=1)
    return _topk(d, np.arange(len(d)), min(k, len(d)))


def knn_vectors(
    data: np.ndarray, query: np.ndarray, k: int, metric: str = "l2",
    exclude: set[int] | frozenset = frozenset(), block: int = 8192,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-NN over embeddings (float64, blocked), ``metric`` ``l1`` or ``l2``; ties by row."""
    if metric not in ("l1", "l2"):
        raise RsSegError(f"unknown metric '{metric}'; use l1 or l2")
    q = np.asarray(query, dtype=np.float64).reshape(1, -1)
    if data.ndim != 2 or data.shape[1] != q.shape[1]:
        raise RsSegError(f"query embedding has {q.shape[1]} values, the index {data.shape[1:]}")
    kk = min(len(data), k + len(exclude))
    best_d, best_r = np.zeros(0), np.zeros(0, dtype=np.int64)
    for lo in range(0, len(data), block):
        x = np.asarray(data[lo : lo + block], dtype=np.float64) - q
        d = np.abs(x).sum(axis=1) if metric == "l1" else np.sqrt((x * x).sum(axis=1))
        rows = np.arange(lo, lo + len(d))
        best_d, best_r = _topk(np.concatenate([best_d, d]), np.concatenate([best_r, rows]), kk)
    if exclude:
        keep = ~np.isin(best_r, list(exclude))
        best_d, best_r = best_d[keep], best_r[keep]
    return best_d[:k], best_r[:k]


def rank_scores(scores: np.ndarray, k: int, exclude: set[int] | frozenset = frozenset()) -> tuple[np.ndarray, np.ndarray]:
    """Similarity scores (higher is better) -> (scores, rows) of the k best, ties by row."""
    rows = np.arange(len(scores))
    if exclude:
        keep = ~np.isin(rows, list(exclude))
        scores, rows = scores[keep], rows[keep]
    neg, rows = _topk(-np.asarray(scores, dtype=np.float64), rows, min(k, len(rows)))
    return -neg, rows
