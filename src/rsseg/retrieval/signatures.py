"""Class-histogram signatures of masks (seed 000 §5.2).

A signature is the normalised histogram of a mask over the *evaluated* classes (ignored
classes and the "no label" value 255 carry no mass), in class-table order. EMD needs a ground
order of the classes; its cumulative histogram in that order turns EMD into an L1 distance.
Cumulative values are rounded to multiples of ``QUANTUM`` (2**-24) so that every distance
between stored signatures is an exact sum in float64 or int64 whatever the summation order:
the fast index and brute force then agree bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.errors import RsSegError

#: Grid of the stored cumulative histograms; ``1 / QUANTUM`` fits int32 with room to sum 127 classes.
QUANTUM = 2.0**-24
SCALE = 2**24


def resolve_order(classes: ClassTable, order: Sequence[str | int] | None) -> tuple[int, ...]:
    """Names or indices of the evaluated classes in ground order -> class indices.

    ``None`` keeps the class-table order (the seed's choice: GID's labels are already in a
    semantically sound order). Every evaluated class must appear exactly once.
    """
    evaluated = classes.evaluated
    if order is None:
        return tuple(evaluated)
    out: list[int] = []
    for item in order:
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            idx = int(item)
            if not 0 <= idx < classes.num_classes:
                raise RsSegError(f"class order: index {idx} outside 0..{classes.num_classes - 1}")
        elif str(item) in classes.names:
            idx = classes.names.index(str(item))
        else:
            raise RsSegError(
                f"class order: unknown class '{item}'; classes: {', '.join(classes.names)}"
            )
        if idx in classes.ignore:
            raise RsSegError(f"class order: '{classes.names[idx]}' is an ignored class")
        if idx in out:
            raise RsSegError(f"class order: '{classes.names[idx]}' appears twice")
        out.append(idx)
    missing = [classes.names[i] for i in evaluated if i not in out]
    if missing:
        raise RsSegError(f"class order: missing evaluated class(es) {', '.join(missing)}")
    return tuple(out)


@dataclass(frozen=True)
class SignatureSpace:
    """How masks of one class table become signatures and cumulative histograms."""

    classes: ClassTable
    order: tuple[int, ...]

    @classmethod
    def of(cls, classes: ClassTable, order: Sequence[str | int] | None = None) -> SignatureSpace:
        return cls(classes, resolve_order(classes, order))

    @property
    def evaluated(self) -> list[int]:
        return self.classes.evaluated

    @property
    def dim(self) -> int:
        return len(self.evaluated)

    @property
    def names(self) -> list[str]:
        """Signature columns: evaluated classes in class-table order."""
        return [self.classes.names[i] for i in self.evaluated]

    @property
    def order_names(self) -> list[str]:
        return [self.classes.names[i] for i in self.order]

    @property
    def permutation(self) -> np.ndarray:
        """Signature columns in ground order: ``sig[..., permutation]`` is ordered."""
        pos = {c: j for j, c in enumerate(self.evaluated)}
        return np.asarray([pos[c] for c in self.order], dtype=np.intp)

    def lut(self) -> np.ndarray:
        """(256,) mask value -> signature column, ``dim`` for values that carry no mass."""
        lut = np.full(256, self.dim, dtype=np.intp)
        for j, c in enumerate(self.evaluated):
            lut[c] = j
        return lut

    def counts(self, masks: np.ndarray) -> np.ndarray:
        """(..., H, W) uint8 masks -> (..., dim) int64 pixel counts of the evaluated classes."""
        masks = np.asarray(masks)
        if masks.ndim < 2:
            raise RsSegError(f"expected (H, W) masks, got shape {masks.shape}")
        if masks.dtype != np.uint8:
            if masks.size and (masks.min() < 0 or masks.max() > IGNORE_INDEX):
                raise RsSegError("mask values must be class indices 0..254 or 255 (no label)")
            masks = masks.astype(np.uint8)
        lead = masks.shape[:-2]
        flat = self.lut()[masks.reshape(-1, masks.shape[-2] * masks.shape[-1])]
        n = flat.shape[0]
        offsets = (np.arange(n, dtype=np.intp) * (self.dim + 1))[:, None]
        counts = np.bincount((flat + offsets).ravel(), minlength=n * (self.dim + 1))
        return counts.reshape(n, self.dim + 1)[:, : self.dim].reshape(*lead, self.dim)

    def signatures(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Masks -> (normalised float64 histograms, mass = share of pixels with a class).

        A mask with no evaluated pixel gets an all-zero histogram and mass 0.
        """
        counts = self.counts(masks).astype(np.float64)
        total = counts.sum(axis=-1, keepdims=True)
        pixels = np.asarray(masks).shape[-2] * np.asarray(masks).shape[-1]
        hist = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
        return hist, total[..., 0] / max(pixels, 1)

    def cumulative(self, hist: np.ndarray) -> np.ndarray:
        """Histograms (signature columns) -> float32 cumulative histograms in ground order,
        on the ``QUANTUM`` grid, last column exactly 1."""
        hist = np.asarray(hist, dtype=np.float64)
        return quantize(np.cumsum(hist[..., self.permutation], axis=-1))


def quantize(cumulative: np.ndarray) -> np.ndarray:
    """Round cumulative histograms onto the ``QUANTUM`` grid (exact in float32)."""
    q = np.rint(np.clip(np.asarray(cumulative, dtype=np.float64), 0.0, 1.0) * SCALE) / SCALE
    return q.astype(np.float32)


def to_fixed(cumulative: np.ndarray) -> np.ndarray:
    """Stored float32 cumulative histograms -> exact int32 multiples of ``QUANTUM``."""
    fixed = np.rint(np.asarray(cumulative, dtype=np.float64) * SCALE)
    return fixed.astype(np.int32)
