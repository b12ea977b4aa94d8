"""Retrieval maths without a model: EMD closed form vs POT, metric axioms, exact search,
Top-N / Top-N@M, spatial scores, signatures, ViT weight loading and the encoder hook."""

from __future__ import annotations

import itertools
from typing import ClassVar

import numpy as np
import pytest
import torch

from rsseg.classes import ClassTable
from rsseg.errors import RsSegError
from rsseg.retrieval.distances import (
    confusions,
    emd,
    emd_cumulative,
    emd_ordered,
    emd_pot,
    order_ground_distance,
    spatial_scores,
)
from rsseg.retrieval.evaluate import compare_methods, score_rankings, top_n, top_n_at_m
from rsseg.retrieval.search import (
    EmdSearcher,
    brute_force_emd,
    knn_vectors,
    rank_scores,
)
from rsseg.retrieval.signatures import SignatureSpace, quantize, resolve_order

TABLE = ClassTable(
    names=("bg", "water", "forest", "crop", "urban"),
    colors=((0, 0, 0), (0, 0, 255), (0, 128, 0), (255, 255, 0), (255, 0, 0)),
    ignore=(0,),
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _hists(rng: np.random.Generator, n: int, c: int, alpha: float = 0.5) -> np.ndarray:
    h = rng.dirichlet(np.full(c, alpha), size=n)
    h[rng.random(h.shape) < 0.2] = 0  # sparse, like real tiles
    h[:, 0] += 1e-3
    return h / h.sum(axis=1, keepdims=True)


def test_closed_form_emd_equals_pot():
    rng = np.random.default_rng(0)
    for c in (2, 3, 7, 16):
        ground = order_ground_distance(range(c))
        a, b = _hists(rng, 20, c), _hists(rng, 20, c)
        closed = emd_ordered(a, b)
        pot = np.array([emd_pot(x, y, ground) for x, y in zip(a, b, strict=True)])
        np.testing.assert_allclose(closed, pot, atol=1e-9)


def test_class_order_is_the_ground_distance_of_pot():
    rng = np.random.default_rng(1)
    order = [3, 0, 2, 1, 5, 4]
    ground = order_ground_distance(order)
    for a, b in zip(_hists(rng, 10, 6), _hists(rng, 10, 6), strict=True):
        assert emd(a, b, order=order) == pytest.approx(emd_pot(a, b, ground), abs=1e-9)
        assert emd(a, b, ground=ground) == pytest.approx(emd_pot(a, b, ground), abs=1e-12)


def test_metric_axioms_closed_form_and_pot():
    rng = np.random.default_rng(2)
    h = _hists(rng, 12, 7)
    pts = rng.random((7, 2))
    euclid = np.linalg.norm(pts[:, None] - pts[None], axis=-1)  # a metric ground distance
    for dist in (lambda a, b: emd(a, b), lambda a, b: emd_pot(a, b, euclid)):
        for a in h:
            assert dist(a, a) == pytest.approx(0, abs=1e-12)
        for a, b in itertools.combinations(h[:6], 2):
            assert dist(a, b) == pytest.approx(dist(b, a), abs=1e-12)
            assert dist(a, b) > 0
        for a, b, c in itertools.permutations(h[:6], 3):
            assert dist(a, c) <= dist(a, b) + dist(b, c) + 1e-12


def test_emd_rejects_bad_histograms():
    with pytest.raises(RsSegError, match="non-negative"):
        emd(np.array([0.5, -0.5]), np.array([0.5, 0.5]))
    with pytest.raises(RsSegError, match="empty"):
        emd_pot(np.zeros(3), np.ones(3), order_ground_distance(range(3)))


def test_signatures_leave_out_ignored_and_unlabelled():
    space = SignatureSpace.of(TABLE, ["urban", "crop", "forest", "water"])
    mask = np.array([[0, 1, 1, 255], [2, 3, 4, 4]], dtype=np.uint8)
    hist, mass = space.signatures(mask)
    assert space.names == ["water", "forest", "crop", "urban"]
    np.testing.assert_allclose(hist, [2 / 6, 1 / 6, 1 / 6, 2 / 6])
    assert mass == pytest.approx(6 / 8)
    cum = space.cumulative(hist)  # ground order: urban, crop, forest, water
    np.testing.assert_allclose(cum, [2 / 6, 3 / 6, 4 / 6, 1.0], atol=1e-7)
    assert cum[-1] == 1.0 and cum.dtype == np.float32
    empty, m0 = space.signatures(np.zeros((4, 4), np.uint8))
    assert m0 == 0 and not empty.any()
    batch, _ = space.signatures(np.stack([mask, mask]))
    assert batch.shape == (2, 4)


def test_resolve_order_errors():
    assert resolve_order(TABLE, None) == (1, 2, 3, 4)
    with pytest.raises(RsSegError, match="unknown class 'sea'"):
        resolve_order(TABLE, ["sea", "forest", "crop", "urban"])
    with pytest.raises(RsSegError, match="ignored"):
        resolve_order(TABLE, ["bg", "water", "forest", "crop", "urban"])
    with pytest.raises(RsSegError, match="missing evaluated class"):
        resolve_order(TABLE, ["water", "forest"])


def test_index_search_equals_brute_force_with_ties():
    rng = np.random.default_rng(3)
    for n, c in ((500, 3), (20000, 7), (60000, 16)):
        h = _hists(rng, n, c, alpha=0.3)
        h[n // 3 : n // 3 + 50] = h[7]  # exact ties
        cum = quantize(np.cumsum(h, axis=1))
        searcher = EmdSearcher(cum)
        for i in range(12):
            q = cum[rng.integers(n)] if i % 2 else quantize(np.cumsum(_hists(rng, 1, c)[0]))
            for k in (1, 10, 120):
                d, r = searcher.search(q, k)
                bd, br = brute_force_emd(cum, q, k)
                np.testing.assert_array_equal(r, br)
                np.testing.assert_array_equal(d, bd)
        d, r = searcher.search(cum[7], 60)
        assert d[0] == 0 and list(r[:3]) == [7, n // 3, n // 3 + 1]  # ties by row
        d, r = searcher.search(cum[7], 5, exclude={7})
        assert 7 not in r and len(r) == 5
    # EMD between stored rows is exact: equals the closed form within float32 rounding
    np.testing.assert_allclose(emd_cumulative(cum[0], cum[1]), emd_ordered(h[0], h[1]), atol=1e-5)


def test_knn_vectors_and_rank_scores():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 8))
    x[10] = x[20]
    for metric, norm in (("l1", 1), ("l2", 2)):
        d, r = knn_vectors(x, x[20], 5, metric, exclude={20})
        ref = np.linalg.norm(x - x[20], ord=norm, axis=1)
        ref[20] = np.inf
        assert r[0] == 10 and d[0] == 0
        np.testing.assert_array_equal(r, np.lexsort((np.arange(300), ref))[:5])
    scores, rows = rank_scores(np.array([0.1, 0.9, 0.5, 0.9]), 3, exclude={0})
    assert list(rows) == [1, 3, 2] and list(scores) == [0.9, 0.9, 0.5]
    with pytest.raises(RsSegError, match="metric"):
        knn_vectors(x, x[0], 3, "cosine")


def test_top_n_and_top_n_at_m_on_hand_made_rankings():
    emd_rank = ["a", "b", "c", "d", "e", "f"]
    other = ["c", "x", "a", "y", "b", "z", "d", "e"]
    assert top_n(emd_rank, other, 1) == 0.0
    assert top_n(emd_rank, other, 3) == 1.0
    assert top_n_at_m(emd_rank, other, 5, 5) == pytest.approx(3 / 5)  # a, b, c
    assert top_n_at_m(emd_rank, other, 5, 8) == pytest.approx(5 / 5)
    assert top_n_at_m(emd_rank, other, 2, 1) == 0.0
    row = score_rankings(emd_rank, other, (1, 5), 5, (5, 10))
    assert row == {"top1": 0.0, "top5": 1.0, "top5@5": 0.6, "top5@10": 1.0}
    assert top_n(emd_rank, emd_rank, 1) == 1.0 and top_n_at_m(emd_rank, emd_rank, 5, 5) == 1.0


def test_compare_methods_averages_over_queries(monkeypatch):
    from rsseg.retrieval import query as qm
    from rsseg.retrieval.evaluate import format_comparison

    class Fake:  # a stand-in Searcher with fixed rankings per (query, method)
        index = None
        ranks: ClassVar = {("q1", "emd"): [1, 2], ("q1", "m"): [1, 9], ("q2", "emd"): [3, 4], ("q2", "m"): [4, 3]}

        def query(self, q):
            return q

        def rank(self, q, method, k):
            return None, self.ranks[(q, method.name)]

    from rsseg.retrieval import evaluate as em

    monkeypatch.setattr(em, "Searcher", Fake)  # the names compare_methods looks up
    monkeypatch.setattr(em, "resolve_method", lambda index, by: qm.Method(by, "x", by))
    table = compare_methods(Fake(), ["q1", "q2"], ns=(1, 2), n_at=2, ms=(1, 2), methods=["m"])
    assert table == {"m": {"top1": 0.5, "top2": 1.0, "top2@1": 0.5, "top2@2": 0.75}}
    assert format_comparison(table).splitlines()[0].split() == ["method", "top1", "top2", "top2@1", "top2@2"]


def test_spatial_scores_on_hand_made_masks():
    space = SignatureSpace.of(TABLE)
    ref = np.array([[1, 1, 2, 2], [1, 1, 2, 2]], dtype=np.uint8)
    same = ref.copy()
    shifted = np.array([[2, 2, 1, 1], [2, 2, 1, 1]], dtype=np.uint8)  # same histogram, moved
    half = np.array([[1, 1, 1, 1], [1, 1, 2, 255]], dtype=np.uint8)
    cm = confusions(ref, np.stack([same, shifted, half]), space.lut(), space.dim)
    s = spatial_scores(cm)
    np.testing.assert_allclose(s["miou"], [1, 0, (4 / 6 + 1 / 3) / 2])
    np.testing.assert_allclose(s["pixel_precision"], [1, 0, 5 / 7])
    np.testing.assert_allclose(s["wiou"], [1, 0, 4 / 7 * 4 / 6 + 3 / 7 * 1 / 3])
    # the seed's point: EMD sees the shifted mask as identical, spatial scores as disjoint
    h = space.signatures(np.stack([ref, shifted]))[0]
    assert emd(h[0], h[1]) == 0


def _tiny_vit(tmp_path, depth: int):
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=depth)
    path = tmp_path / f"vit-depth{depth}.pth"
    torch.save({"teacher": {f"backbone.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def test_vit_embeddings_from_local_weights(tmp_path):
    from rsseg.retrieval.embeddings import ViTEmbedder, ViTSpec

    path = _tiny_vit(tmp_path, depth=1)
    rgb = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    cls = ViTEmbedder(ViTSpec("vit_tiny_patch16_224", path, "cls", {"depth": 1}))(rgb)
    mean = ViTEmbedder(ViTSpec("vit_tiny_patch16_224", path, "mean", {"depth": 1}))(rgb)
    assert cls.shape == mean.shape == (2, 192) and not np.allclose(cls, mean)
    assert ViTSpec("dino-vits16", path).method == "vit-s16"
    assert ViTSpec("dino-vitb8", path, "mean").arch == "vit_base_patch8_224"
    assert ViTSpec.parse(f"dino-vitb8={path}", "mean").method == "vit-b8-mean"


def test_vit_weights_that_do_not_fit_name_the_keys(tmp_path):
    from rsseg.retrieval.vit import ViTSpec, load_vit

    path = _tiny_vit(tmp_path, depth=1)
    with pytest.raises(RsSegError, match=r"does not fit.*missing keys blocks\.1\."):
        load_vit(ViTSpec("vit_tiny_patch16_224", path, options={"depth": 2}))
    with pytest.raises(RsSegError, match="not found"):
        load_vit(ViTSpec("vit_tiny_patch16_224", tmp_path / "none.pth"))
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(RsSegError, match="not a readable weights file"):
        load_vit(ViTSpec("vit_tiny_patch16_224", tmp_path / "bad.pth"))
    with pytest.raises(RsSegError, match="ARCH=WEIGHTS"):
        ViTSpec.parse("dino-vits16")


def test_backbone_stage_via_encoder_of_hook(monkeypatch):
    import rsseg.models
    from rsseg.models.unet import UNet
    from rsseg.retrieval.embeddings import last_stage

    net = UNet(3, 4, base_width=4, depth=2).eval()
    x = torch.randn(2, 3, 32, 32)
    direct = last_stage(net, x) if not hasattr(rsseg.models, "encoder_of") else net.encode(x)[-1]
    assert direct.shape == (2, 16, 8, 8)
    monkeypatch.setattr(rsseg.models, "encoder_of", lambda m: m.encoder, raising=False)
    with torch.no_grad():
        hooked = last_stage(net, x)
    torch.testing.assert_close(hooked, net.encode(x)[-1])
    monkeypatch.setattr(rsseg.models, "encoder_of", lambda m: None, raising=False)
    with pytest.raises(RsSegError, match="exposes no encoder"):
        last_stage(torch.nn.Conv2d(3, 4, 1), x)
