"""Model calls on batches of windows: logits, optional D4 test-time augmentation.

Only ``Predictor.select_and_normalize`` and ``Predictor.logits`` are used, so any engine
behind a ``Predictor`` (torch, onnxruntime) runs here unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from rsseg.errors import RsSegError
from rsseg.infer.reader import Strip
from rsseg.infer.windows import Grid
from rsseg.predictor import Predictor

#: The 8 symmetries of the square: (quarter turns, horizontal flip first).
D4 = tuple((k, flip) for flip in (False, True) for k in range(4))


def batch_size_for(predictor: Predictor, grid: Grid) -> int:
    """Windows per forward pass: the predictor's batch, scaled to keep its pixel budget
    (batch 8 of 256 px windows -> batch 1 of 1008 x 944 px windows)."""
    budget = max(1, int(predictor.batch_size)) * predictor.window**2
    return max(1, budget // (grid.win_y * grid.win_x))


def check_bands(predictor: Predictor, count: int, name: str = "the image") -> None:
    """A clear error when the input's bands cannot feed the model."""
    if predictor.bands is not None:
        bad = [b + 1 for b in predictor.bands if not -count <= b < count]
        if bad:
            raise RsSegError(
                f"{name} has {count} band(s) but the model reads bands "
                f"{[b + 1 for b in predictor.bands]} (1-based)"
            )
    elif count != predictor.in_channels:
        raise RsSegError(
            f"{name} has {count} band(s) but the model expects {predictor.in_channels}; "
            "use an image with the training bands or a checkpoint trained on these"
        )


class WindowEngine:
    """Windows of a strip -> per-window class indices or probabilities of the kept centre."""

    def __init__(self, predictor: Predictor, grid: Grid, *, tta: bool = False) -> None:
        self.predictor, self.grid, self.tta = predictor, grid, tta
        self.batch = batch_size_for(predictor, grid)

    def batches(self, strip: Strip) -> Iterator[tuple[list[int], torch.Tensor]]:
        """(window column indices, normalised (B, C, win_y, win_x) tensor) per batch."""
        p = self.predictor
        for start in range(0, self.grid.cols, self.batch):
            cols = list(range(start, min(self.grid.cols, start + self.batch)))
            x = np.stack([p.select_and_normalize(strip.window(j)) for j in cols])
            if np.issubdtype(strip.data.dtype, np.floating):  # NaN would spread over the window
                np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            yield cols, torch.from_numpy(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.predictor.logits(x)
        if tuple(out.shape[-2:]) != tuple(x.shape[-2:]):
            raise RsSegError(
                f"model output is {tuple(out.shape[-2:])} for a {tuple(x.shape[-2:])} window; "
                "the model must keep the input size"
            )
        return out

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax of the logits, averaged over the 8 D4 transforms when ``tta``."""
        if not self.tta:
            return torch.softmax(self.logits(x), dim=1)
        total = None
        for k, flip in D4:
            t = torch.flip(x, dims=(3,)) if flip else x
            y = torch.softmax(self.logits(torch.rot90(t, k, dims=(2, 3))), dim=1)
            y = torch.rot90(y, -k, dims=(2, 3))
            y = torch.flip(y, dims=(3,)) if flip else y
            total = y if total is None else total + y
        return total / len(D4)

    def crop(self, t: torch.Tensor) -> torch.Tensor:
        """The kept centre of per-window maps (..., win_y, win_x)."""
        m, g = self.grid.margin, self.grid
        return t[..., m : m + g.keep_y, m : m + g.keep_x]
