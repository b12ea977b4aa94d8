"""Output heads: a new per-window output plugs into ``run_grid`` without touching its loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from infer_helpers import make_predictor, random_image

from rsseg.errors import RsSegError
from rsseg.infer import PredictOptions
from rsseg.infer.heads import ConfidenceHead, LayerHead, WindowHead
from rsseg.infer.reader import ArraySource
from rsseg.infer.stream import run_grid
from rsseg.infer.windows import Grid


class MaxLogitHead(WindowHead):
    """A toy output no module knows: the per-pixel largest logit."""

    name, reads = "max_logit", "logits"

    def compute(self, values: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return values.max(axis=0)


def _rows(predictor, image, heads, **options) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None]:
    """Every head's rows, the class map and the emitted probabilities, stitched over a grid of
    unequal rows and columns (two windows per forward pass)."""
    h, w = image.shape[1:]
    got: dict[str, np.ndarray] = {}
    classes = np.full((h, w), 255, np.uint8)
    probs: list[np.ndarray] = []
    seen: list[tuple[int, int]] = []

    def on_heads(y0, y1, cls, rows, raw):
        seen.append((y0, y1))
        for name, v in rows.items():
            got.setdefault(name, np.full((*v.shape[:-2], h, w), np.nan, np.float32))[..., y0:y1, :] = v

    def emit(y0, y1, cls, p, raw):
        classes[y0:y1] = cls
        if p is not None:
            probs.append(p)

    grid = Grid(h, w, (48, 64, 48), (64, 64, 48, 48), 8)
    run_grid(predictor, ArraySource(image), grid, emit, options=PredictOptions.build(predictor, mode="fast", **options),
             heads=heads, on_heads=on_heads, scaled=False)
    assert [y for s in seen for y in range(*s)] == list(range(h))  # every row once, in order
    return got, classes, np.concatenate(probs, axis=1) if probs else None


def test_a_new_head_plugs_in_without_touching_run_grid():
    """A per-pixel model (1x1 kernels): the stitched max logit is the whole scene's."""
    predictor = make_predictor(window=64, keep=48, batch_size=20, kernel=1)
    image = random_image(150, 215)
    got, classes, _ = _rows(predictor, image, [MaxLogitHead()])
    with torch.no_grad():
        logits = predictor.model(torch.from_numpy(predictor.select_and_normalize(image))[None])[0].numpy()
    np.testing.assert_allclose(got["max_logit"], logits.max(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(classes, logits.argmax(axis=0))


def test_layer_head_rows_are_the_emitted_probabilities():
    """A head and the built-in probabilities place the same kept centres at the same pixels."""
    predictor = make_predictor(window=64, keep=48, batch_size=20)
    got, _, probs = _rows(predictor, random_image(150, 215), [LayerHead("probs"), ConfidenceHead("max", False)],
                          probabilities=True)
    np.testing.assert_array_equal(got["probs"], probs)
    np.testing.assert_array_equal(got["confidence"], probs.max(axis=0))


def test_blended_rows_feed_probability_heads():
    predictor = make_predictor(window=64, keep=48, batch_size=20)
    got, _, probs = _rows(predictor, random_image(150, 215), [ConfidenceHead("max", False)],
                          probabilities=True, blend="linear")
    np.testing.assert_array_equal(got["confidence"], probs.max(axis=0))


@pytest.mark.parametrize(("options", "head", "match"), [
    ({"blend": "linear"}, MaxLogitHead(), "blending averages probabilities"),
    ({"tta": True}, MaxLogitHead(), "TTA averages probabilities"),
    ({}, LayerHead("views"), "the D4 views need TTA"),
])
def test_a_head_the_stitcher_cannot_feed_is_one_clear_error(options, head, match):
    predictor = make_predictor(window=64, keep=48)
    with pytest.raises(RsSegError, match=f"'{head.name}'.*{match}"):
        _rows(predictor, random_image(64, 64), [head], **options)


def test_two_heads_with_one_name_are_refused():
    with pytest.raises(RsSegError, match="share a name"):
        _rows(make_predictor(window=64, keep=48), random_image(64, 64), [LayerHead("probs"), LayerHead("probs")])
