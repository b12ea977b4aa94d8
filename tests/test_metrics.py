"""Metrics and confusion-matrix plots, checked against hand-computed numbers."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from rsseg.classes import IGNORE_INDEX, ClassTable
from rsseg.metrics import ConfusionMatrix, compute_metrics, format_metrics_table, save_metrics

COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0))


def table(*names: str, ignore: tuple[int, ...] = ()) -> ClassTable:
    return ClassTable(names=names, colors=COLORS[: len(names)], ignore=ignore)


def pixels_from_matrix(m, seed=0, extra_ignored=0):
    """(pred, target) 2-D arrays whose confusion matrix is ``m``, plus ignore pixels."""
    gt, pr = [], []
    for i, row in enumerate(m):
        for j, n in enumerate(row):
            gt += [i] * n
            pr += [j] * n
    gt += [IGNORE_INDEX] * extra_ignored
    pr += [0] * extra_ignored
    order = np.random.default_rng(seed).permutation(len(gt))
    gt = np.asarray(gt, dtype=np.uint8)[order]
    pr = np.asarray(pr, dtype=np.int64)[order]
    # reshape to 2-D when possible to exercise "any shape"
    shape = (2, len(gt) // 2) if len(gt) % 2 == 0 else (len(gt),)
    return pr.reshape(shape), gt.reshape(shape)


def approx(x):
    return pytest.approx(float(x), abs=1e-12)


# 3-class example. Rows = ground truth, columns = prediction.
M3 = [[5, 1, 0],
      [2, 3, 1],
      [0, 1, 4]]


def test_three_class_by_hand():
    pred, target = pixels_from_matrix(M3, extra_ignored=7)  # 7 ignore-index pixels skipped
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    assert cm.matrix.dtype == np.int64
    assert cm.matrix.tolist() == M3

    met = compute_metrics(cm.matrix, table("a", "b", "c"))
    pc = met["per_class"]
    # row sums (support): a 5+1+0=6, b 2+3+1=6, c 0+1+4=5 -> 17 pixels
    # col sums:           a 5+2+0=7, b 1+3+1=5, c 0+1+4=5
    # a: TP 5, FN 6-5=1, FP 7-5=2 -> IoU 5/8, P 5/7, R 5/6, F1 10/(10+2+1)=10/13
    assert pc["a"] == {"iou": approx(5 / 8), "precision": approx(5 / 7),
                       "recall": approx(5 / 6), "f1": approx(10 / 13), "support": 6}
    # b: TP 3, FN 3, FP 2 -> IoU 3/8, P 3/5, R 3/6, F1 6/(6+2+3)=6/11
    assert pc["b"] == {"iou": approx(3 / 8), "precision": approx(3 / 5),
                       "recall": approx(1 / 2), "f1": approx(6 / 11), "support": 6}
    # c: TP 4, FN 1, FP 1 -> IoU 4/6, P 4/5, R 4/5, F1 8/10
    assert pc["c"] == {"iou": approx(4 / 6), "precision": approx(4 / 5),
                       "recall": approx(4 / 5), "f1": approx(8 / 10), "support": 5}
    # mIoU = (5/8 + 3/8 + 2/3)/3 = (1 + 2/3)/3 = 5/9
    assert met["miou"] == approx(5 / 9)
    # OA = (5+3+4)/17 = 12/17
    assert met["oa"] == approx(12 / 17)
    # mP = (5/7 + 3/5 + 4/5)/3 = (25/35 + 49/35)/3 = 74/105
    assert met["mprecision"] == approx(74 / 105)
    # mR = (5/6 + 1/2 + 4/5)/3 = (25 + 15 + 24)/30/3 = 64/90 = 32/45
    assert met["mrecall"] == approx(32 / 45)
    # mF1 = (10/13 + 6/11 + 4/5)/3 = (550 + 390 + 572)/715/3 = 1512/2145 = 504/715
    assert met["mf1"] == approx(504 / 715)
    assert Fraction(10, 13) + Fraction(6, 11) + Fraction(4, 5) == Fraction(1512, 715)

    assert met["confusion_matrix"] == M3
    assert met["class_names"] == ["a", "b", "c"]
    assert met["evaluated_classes"] == ["a", "b", "c"]
    assert met["ignored_classes"] == []
    assert set(met) == {"miou", "oa", "mprecision", "mrecall", "mf1", "per_class",
                        "confusion_matrix", "class_names", "evaluated_classes",
                        "ignored_classes"}


def test_ignore_index_pixels_skipped():
    target = np.array([[0, 1, IGNORE_INDEX], [IGNORE_INDEX, 1, 0]])
    pred = np.array([[0, 0, 1], [1, 1, 1]])
    cm = ConfusionMatrix(2)
    cm.update(pred, target)
    # counted pairs (gt, pred): (0,0) (1,0) (1,1) (0,1)
    assert cm.matrix.tolist() == [[1, 1], [1, 1]]
    cm2 = ConfusionMatrix(3, ignore_index=2)
    cm2.update(np.array([0, 1, 0]), np.array([2, 1, 0]))  # custom ignore value
    assert cm2.matrix.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]


def test_ignored_class():
    # class 0 "bg" is ignored. Rows = GT.
    m = [[3, 1, 2],   # bg row: dropped entirely
         [1, 4, 1],   # x: one pixel predicted as bg -> FN of x
         [0, 2, 5]]   # y
    met = compute_metrics(np.array(m), table("bg", "x", "y", ignore=(0,)))
    pc = met["per_class"]
    assert list(pc) == ["x", "y"]
    # x: TP 4, support 1+4+1=6, FN 2, FP (col x over x,y rows: 4+2) - 4 = 2
    #    IoU 4/8, P 4/6, R 4/6, F1 8/(8+2+2)=2/3
    assert pc["x"] == {"iou": approx(1 / 2), "precision": approx(2 / 3),
                       "recall": approx(2 / 3), "f1": approx(2 / 3), "support": 6}
    # y: TP 5, support 7, FN 2, FP (1+5) - 5 = 1  (bg row's 2 not counted)
    #    IoU 5/8, P 5/6, R 5/7, F1 10/13
    assert pc["y"] == {"iou": approx(5 / 8), "precision": approx(5 / 6),
                       "recall": approx(5 / 7), "f1": approx(10 / 13), "support": 7}
    # OA = (4+5)/(6+7) = 9/13; mIoU = (1/2 + 5/8)/2 = 9/16
    assert met["oa"] == approx(9 / 13)
    assert met["miou"] == approx(9 / 16)
    assert met["mrecall"] == approx((2 / 3 + 5 / 7) / 2)
    assert met["ignored_classes"] == ["bg"]
    assert met["evaluated_classes"] == ["x", "y"]
    assert met["confusion_matrix"] == m  # full matrix kept, ignored row included


def test_absent_class_is_null_and_excluded_from_means():
    m = [[3, 1, 0],
         [1, 2, 0],
         [0, 0, 0]]  # c never in GT nor predicted
    met = compute_metrics(np.array(m), table("a", "b", "c"))
    assert met["per_class"]["c"] == {"iou": None, "precision": None, "recall": None,
                                     "f1": None, "support": 0}
    # a: TP 3 FN 1 FP 1 -> IoU 3/5; b: TP 2 FN 1 FP 1 -> IoU 2/4; mean over a, b only
    assert met["miou"] == approx((3 / 5 + 1 / 2) / 2)
    assert met["mprecision"] == approx((3 / 4 + 2 / 3) / 2)
    assert met["oa"] == approx(5 / 7)
    json.dumps(met)  # None -> null


def test_present_never_predicted_and_predicted_never_present():
    met = compute_metrics(np.array([[4, 0], [2, 0]]), table("a", "b"))
    # b: TP 0, FN 2, FP 0 -> P = 0/0 -> 0.0 (present and missed), R 0, IoU 0, F1 0
    assert met["per_class"]["b"] == {"iou": 0.0, "precision": 0.0, "recall": 0.0,
                                     "f1": 0.0, "support": 2}
    # a: TP 4, FN 0, FP 2 -> IoU 4/6; mIoU = (2/3 + 0)/2 = 1/3
    assert met["miou"] == approx(1 / 3)
    met = compute_metrics(np.array([[3, 1], [0, 0]]), table("a", "b"))
    # b: TP 0, FN 0, FP 1 -> recall 0/0 -> 0.0, precision 0, IoU 0
    assert met["per_class"]["b"] == {"iou": 0.0, "precision": 0.0, "recall": 0.0,
                                     "f1": 0.0, "support": 0}


def test_no_evaluated_pixels():
    met = compute_metrics(np.zeros((2, 2), dtype=np.int64), table("a", "b"))
    for key in ("miou", "oa", "mprecision", "mrecall", "mf1"):
        assert met[key] is None
    # only ignored-class pixels -> still nothing evaluated
    met = compute_metrics(np.array([[5, 1], [0, 0]]), table("bg", "a", ignore=(0,)))
    assert met["oa"] is None and met["miou"] is None


def test_torch_and_numpy_identical():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    target = rng.integers(0, 5, size=(3, 17, 19)).astype(np.uint8)
    target[rng.random(target.shape) < 0.1] = IGNORE_INDEX
    pred = rng.integers(0, 5, size=(3, 17, 19))
    a, b, c = ConfusionMatrix(5), ConfusionMatrix(5), ConfusionMatrix(5)
    a.update(pred, target)
    b.update(torch.from_numpy(pred), torch.from_numpy(target))
    c.update(torch.from_numpy(pred), target)  # mixed inputs
    assert a.matrix.sum() == (target != IGNORE_INDEX).sum()
    np.testing.assert_array_equal(a.matrix, b.matrix)
    np.testing.assert_array_equal(a.matrix, c.matrix)
    with pytest.raises(ValueError):
        ConfusionMatrix(5).update(torch.tensor([0, 5]), torch.tensor([0, 1]))


def test_accumulation_equals_concatenation():
    rng = np.random.default_rng(2)
    preds = [rng.integers(0, 4, size=(8, 8)) for _ in range(4)]
    targets = [rng.integers(0, 4, size=(8, 8)) for _ in range(4)]
    targets[1][0, :] = IGNORE_INDEX
    acc = ConfusionMatrix(4)
    for p, t in zip(preds, targets):
        acc.update(p, t)
    once = ConfusionMatrix(4)
    once.update(np.concatenate(preds), np.concatenate(targets))
    np.testing.assert_array_equal(acc.matrix, once.matrix)

    halves = ConfusionMatrix(4), ConfusionMatrix(4)
    halves[0].update(np.concatenate(preds[:2]), np.concatenate(targets[:2]))
    halves[1].update(np.concatenate(preds[2:]), np.concatenate(targets[2:]))
    merged = halves[0]
    merged += halves[1]
    np.testing.assert_array_equal(merged.matrix, once.matrix)
    with pytest.raises(ValueError):
        merged.merge(ConfusionMatrix(3))
    merged.reset()
    assert merged.matrix.sum() == 0


def test_bad_inputs_raise():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError):
        cm.update(np.array([0, 3]), np.array([0, 1]))  # prediction == num_classes
    with pytest.raises(ValueError):
        cm.update(np.array([-1, 0]), np.array([0, 1]))
    with pytest.raises(ValueError):
        cm.update(np.array([0, 1]), np.array([0, 7]))  # label out of range, not ignore
    with pytest.raises(ValueError):
        cm.update(np.array([0, 1]), np.array([0, 1, 2]))  # shape mismatch
    with pytest.raises(ValueError):
        cm.update(np.array([0.0, 1.0]), np.array([0, 1]))  # not integer
    assert cm.matrix.sum() == 0  # failed updates add nothing


def _plain(obj):
    """Every number in the dict is a plain Python int/float/None (no numpy scalars)."""
    if isinstance(obj, dict):
        return all(_plain(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_plain(v) for v in obj)
    return obj is None or type(obj) in (int, float, str)


def test_metrics_json_round_trip(tmp_path):
    met = compute_metrics(np.array(M3, dtype=np.int64), table("a", "b", "c"))
    assert _plain(met)
    path = save_metrics(met, tmp_path / "sub" / "metrics.json")
    assert json.loads(path.read_text()) == met
    assert not [p for p in path.parent.iterdir() if p.name != "metrics.json"]  # no temp left


def test_format_metrics_table():
    from rich.console import Console
    from rich.table import Table

    met = compute_metrics(np.array([[3, 1, 0], [1, 2, 0], [0, 0, 0]]), table("a", "b", "c"))
    tab = format_metrics_table(met)
    assert isinstance(tab, Table)
    console = Console(record=True, width=100)
    console.print(tab)
    text = console.export_text()
    assert "mean" in text and "c" in text and "55.00" in text  # mIoU 0.55


def test_confusion_png(tmp_path):
    from PIL import Image

    from rsseg.plots import plot_confusion_matrix, save_rgb_png

    m = np.array([[3, 1, 2, 0],
                  [1, 40, 1, 3],
                  [0, 2, 50, 0],
                  [0, 0, 0, 0]])  # class 3 has no support -> grey row
    classes = ClassTable(names=("bg", "road", "building", "water"), colors=COLORS,
                         ignore=(0,))
    out = plot_confusion_matrix(m, classes, tmp_path / "cm.png", title="val")
    assert out == tmp_path / "cm.png"
    with Image.open(out) as img:
        assert img.format == "PNG"
        assert img.size[0] > 100 and img.size[1] > 100

    rgb = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    p = save_rgb_png(rgb, tmp_path / "x.png")
    with Image.open(p) as img:
        np.testing.assert_array_equal(np.asarray(img), rgb)
