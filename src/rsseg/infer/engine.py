"""Model calls on batches of windows: logits, optional D4 test-time augmentation.

Only ``Predictor.select_and_normalize`` and ``Predictor.logits`` are used, so any engine
behind a ``Predictor`` (torch, onnxruntime) runs here unchanged. The array operations
around the model (softmax, argmax, D4 transforms) run in torch for torch models, as they
always did, and in numpy for numpy models (``Predictor.numpy_native``), so the onnxruntime
engine never imports torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from rsseg.errors import RsSegError
from rsseg.infer.reader import Strip
from rsseg.infer.windows import Grid
from rsseg.trained.predictor import Predictor

#: The 8 symmetries of the square: (quarter turns, horizontal flip first).
D4 = tuple((k, flip) for flip in (False, True) for k in range(4))


class NumpyOps:
    """Window-map operations on numpy arrays (B, K, h, w), for numpy models."""

    @staticmethod
    def tensor(x: np.ndarray) -> np.ndarray:
        return x

    @staticmethod
    def softmax(x: np.ndarray) -> np.ndarray:
        e = np.exp(x - x.max(axis=1, keepdims=True))
        e /= e.sum(axis=1, keepdims=True)
        return e

    @staticmethod
    def classes(x: np.ndarray) -> np.ndarray:
        """(B, K, h, w) scores -> (B, h, w) uint8 index of the first maximum (as argmax)."""
        best = x[:, 0].copy()
        out = np.zeros(best.shape, dtype=np.uint8)
        for k in range(1, x.shape[1]):
            better = x[:, k] > best
            out[better] = k
            np.maximum(best, x[:, k], out=best)
        if np.isnan(x).any():  # rare: argmax semantics (the first NaN wins) for those pixels
            nan = np.isnan(x).any(axis=1)
            out[nan] = np.argmax(x, axis=1)[nan]
        return out

    @staticmethod
    def rot90(x: np.ndarray, k: int) -> np.ndarray:
        return np.rot90(x, k, axes=(2, 3))

    @staticmethod
    def flip(x: np.ndarray) -> np.ndarray:
        return np.flip(x, axis=3)

    @staticmethod
    def numpy(x: np.ndarray) -> np.ndarray:
        return np.asarray(x)


class TorchOps:
    """The same operations in torch (on the model's device), for torch models."""

    def __init__(self) -> None:
        import torch

        self.torch = torch

    def tensor(self, x: np.ndarray) -> Any:
        return self.torch.from_numpy(x)

    def softmax(self, x: Any) -> Any:
        return self.torch.softmax(x, dim=1)

    def classes(self, x: Any) -> np.ndarray:
        """argmax over the classes, by ``max(...).indices``: the same index (the first maximum,
        the first NaN), 25 % faster on channels_last maps (9.2 against 12.4 ms per fast window)."""
        return x.max(dim=1).indices.to(self.torch.uint8).cpu().numpy()

    def rot90(self, x: Any, k: int) -> Any:
        return self.torch.rot90(x, k, dims=(2, 3))

    def flip(self, x: Any) -> Any:
        return self.torch.flip(x, dims=(3,))

    @staticmethod
    def numpy(x: Any) -> np.ndarray:
        return x.cpu().numpy()


def ops_for(predictor: Predictor) -> NumpyOps | TorchOps:
    return NumpyOps() if predictor.numpy_native else TorchOps()


def batch_size_for(batch_size: int, window: int, grid: Grid) -> int:
    """Windows of ``grid`` per forward pass: ``batch_size`` windows of ``window`` px, scaled to
    keep that pixel budget (batch 8 of 256 px windows -> batch 1 of 1008 x 832 px fast windows)."""
    budget = max(1, int(batch_size)) * window**2
    return max(1, budget // (grid.win_y * grid.win_x))


class WindowEngine:
    """Windows of a strip -> per-window class indices or probabilities of the kept centre."""

    def __init__(self, predictor: Predictor, grid: Grid, *, batch_size: int, window: int,
                 tta: bool = False) -> None:
        """``batch_size`` windows of ``window`` px per forward pass (``PredictOptions``), as pixels."""
        self.predictor, self.grid, self.tta = predictor, grid, tta
        self.batch = batch_size_for(batch_size, window, grid)
        self.ops = ops_for(predictor)

    def batches(self, strip: Strip) -> Iterator[tuple[list[int], Any]]:
        """(window column indices, normalised (B, C, win_y, win_x) tensor or array) per batch."""
        p = self.predictor
        for cols in self.grid.col_batches(self.batch):
            x = np.stack([p.select_and_normalize(strip.window(j)) for j in cols])
            if np.issubdtype(strip.data.dtype, np.floating):  # NaN would spread over the window
                np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            yield cols, self.ops.tensor(x)

    def logits(self, x: Any) -> Any:
        out = self.predictor.logits(x)
        if tuple(out.shape[-2:]) != tuple(x.shape[-2:]):
            raise RsSegError(
                f"model output is {tuple(out.shape[-2:])} for a {tuple(x.shape[-2:])} window; "
                "the model must keep the input size"
            )
        return out

    def softmax(self, logits: Any) -> Any:
        """Softmax of ``logits / T``, T the predictor's fitted temperature (``rsseg calibrate``)."""
        t = getattr(self.predictor, "temperature", 1.0)
        return self.ops.softmax(logits if t == 1.0 else logits / t)

    def probabilities(self, x: Any, views: list[Any] | None = None) -> Any:
        """Softmax of the logits, averaged over the 8 D4 transforms when ``tta``; ``views``
        (with ``tta``) gets each transform's argmax, for the disagreement map."""
        ops = self.ops
        if not self.tta:
            return self.softmax(self.logits(x))
        total = None
        for k, flip in D4:
            t = ops.flip(x) if flip else x
            y = self.softmax(self.logits(ops.rot90(t, k)))
            y = ops.rot90(y, -k)
            y = ops.flip(y) if flip else y
            if views is not None:
                views.append(ops.classes(y))  # (B, h, w) uint8: small beside y
            total = y if total is None else total + y
        return total / len(D4)

    def crop(self, t: Any) -> Any:
        """The kept centre of per-window maps (..., window rows, window columns)."""
        m = self.grid.margin
        return t[..., m : t.shape[-2] - m, m : t.shape[-1] - m]
