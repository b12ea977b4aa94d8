"""Per-window heads: outputs computed beside the class map, stitched by the same loop.

A new output (confidence, disagreement, explain's activation maps, a calibration's logits)
is a ``WindowHead``, not a copy of ``stream.run_grid``: it names the kept map it ``reads``
and computes its values from it. The stitchers place a head's kept centres side by side
(``HardStitcher``) or apply it to the blended rows (``Blender``, probability heads only), and
``run_grid`` hands each head's finished rows to its ``on_heads`` callback.

``compute`` must be pointwise over the pixels it is given (a window's kept centre, or
blended rows), so where the rows are cut never changes its values. Memory: each head holds
one strip of its values (``bands x strip rows x scene width`` of its ``dtype``).
"""

from __future__ import annotations

import numpy as np

from rsseg.infer.confidence import confidence as confidence_map
from rsseg.infer.confidence import disagreement as disagreement_map
from rsseg.infer.confidence import to_bytes
from rsseg.infer.writers import probability_bytes

#: the kept per-window maps a head may read: (K, h, w) softmax (D4-averaged with TTA),
#: (K, h, w) raw logits (not with TTA), (8, h, w) uint8 argmax of each D4 view (TTA only)
READS = ("probs", "logits", "views")


class WindowHead:
    """One output computed per window: ``name`` keys its rows, ``reads`` one of ``READS``,
    ``dtype`` is that of its stitched strip (values are cast into it)."""

    name: str = ""
    reads: str = "probs"
    dtype: np.dtype | type = np.float32

    def compute(self, values: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """``values`` (the map it reads, (..., h, w)) and the (h, w) classes -> (h, w) or (B, h, w)."""
        raise NotImplementedError

    def finish(self, rows: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """The stitched rows as handed out, given the final classes (255 at nodata pixels)."""
        return rows


class LayerHead(WindowHead):
    """The kept (K, h, w) logits or probabilities themselves, float32 (explain, calibrate)."""

    def __init__(self, layer: str) -> None:
        self.name = self.reads = layer

    def compute(self, values: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return values


class ConfidenceHead(WindowHead):
    """``confidence.confidence`` of the probabilities; stored uint8 (255 nodata) when ``scaled``."""

    name = "confidence"

    def __init__(self, kind: str, scaled: bool = True) -> None:
        self.kind, self.scaled = kind, scaled
        self.dtype = np.uint8 if scaled else np.float32

    def compute(self, values: np.ndarray, classes: np.ndarray) -> np.ndarray:
        c = confidence_map(values, self.kind)
        return probability_bytes(c) if self.scaled else c

    def finish(self, rows: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return to_bytes(rows, classes) if self.scaled else rows


class DisagreementHead(ConfidenceHead):
    """Share of the 8 D4 views whose argmax differs from the final class (``--tta``)."""

    name = "disagreement"
    reads = "views"

    def __init__(self, scaled: bool = True) -> None:
        super().__init__("disagreement", scaled)

    def compute(self, values: np.ndarray, classes: np.ndarray) -> np.ndarray:
        d = disagreement_map(values, classes)
        return probability_bytes(d) if self.scaled else d
