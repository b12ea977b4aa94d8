"""``benchmarks/plain_baseline.py``: the reference recipe decodes, samples and scores as it says."""

import random

import numpy as np
import torch
from fakedata import dubai
from fakedata._io import labels as fake_labels
from tools import bench_module


def _plain():
    return bench_module("plain_baseline")


def test_masks_decode_to_the_five_scored_classes_with_black_and_unlabeled_ignored(tmp_path):
    plain = _plain()
    root = dubai.make(tmp_path / "dubai")
    for tile, part, border in ((1, 1, False), (2, 1, False), (3, 1, True)):  # RGB, palette, black border
        h, w = dubai.SIZES[tile]
        truth = fake_labels(tile * 10 + part, h, w, list(range(6))).astype(np.int64)
        truth[truth == 5] = plain.IGNORE  # 'unlabeled'
        if border:
            truth[0, :] = plain.IGNORE
        image, decoded = plain.load_pair(root / f"Tile {tile}" / "images" / f"image_part_{part:03d}.jpg")
        assert image.shape == (h, w, 3) and image.dtype == np.float32
        np.testing.assert_array_equal(decoded, truth)


def test_crops_move_image_and_labels_together():
    plain = _plain()
    labels = np.random.default_rng(0).integers(0, 5, (40, 50))
    image = np.repeat(labels[..., None].astype(np.float32), 3, axis=2)  # the image shows its labels
    x, y = plain.random_batch([(image, labels)], 16, 24, random.Random(1))
    assert x.shape == (16, 3, 24, 24) and y.shape == (16, 24, 24)
    assert torch.equal(x[:, 0].long(), y) and torch.equal(x[:, 2].long(), y)


def test_scores_are_iou_over_the_scored_classes_of_one_confusion_matrix():
    plain = _plain()

    class Constant(torch.nn.Module):  # predicts 'road' (2) everywhere, with a 6th 'unlabeled' logit
        def forward(self, x):
            logits = torch.zeros(x.shape[0], 6, *x.shape[2:])
            logits[:, 2] = 1
            logits[:, 5] = 5  # never predicted: the scorer drops the ignored class's logit
            return logits

    rng = np.random.default_rng(2)
    scenes = [(rng.random((h, w, 3), dtype=np.float32), rng.integers(0, 5, (h, w))) for h, w in ((33, 40), (20, 64))]
    scenes[0][1][:3] = plain.IGNORE
    result = plain.evaluate(Constant(), scenes, bf16=False, channels_last=False)
    truth = np.concatenate([lab.ravel() for _, lab in scenes])
    truth = truth[truth != plain.IGNORE]
    road_iou = (truth == 2).sum() / truth.size
    assert result["iou"]["road"] == np.float64(road_iou).item()
    assert result["miou"] == np.float64(road_iou / 5).item()
    assert result["oa"] == np.float64(road_iou).item()


def test_training_scores_at_given_minutes_outside_the_budget():
    """--eval-at: the callback runs once its training minute has passed, and its time is not training time."""
    import time

    plain = _plain()
    labels = np.random.default_rng(0).integers(0, 5, (230, 230))
    scenes = [(np.random.default_rng(1).normal(size=(230, 230, 3)).astype(np.float32), labels)]
    calls = []

    def slow_eval(steps):
        calls.append(steps)
        time.sleep(0.3)  # longer than the whole budget: it must not count

    start = time.monotonic()
    steps = plain.train(torch.nn.Conv2d(3, 6, 1), scenes, 0.005, False, False, 0, {0.001: slow_eval})
    assert len(calls) == 1 and 1 <= calls[0] <= steps
    assert time.monotonic() - start >= 0.3 + 0.3  # the budget (0.3 s) ran besides the evaluation
