"""PredictOptions: every option declared by InferConfig, the checkpoint's section as defaults,
built once per run, and a Predictor without the run's tiling."""

from __future__ import annotations

import dataclasses

import pytest
import rasterio

from infer_helpers import make_predictor, random_image, write_geotiff
from rsseg.config.infer import InferConfig
from rsseg.errors import RsSegError
from rsseg.infer import PredictOptions, predict_files
from rsseg.infer.options import LOW_MEMORY_PIXELS
from rsseg.trained.predictor import Predictor

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _with_defaults(**infer) -> Predictor:
    return dataclasses.replace(make_predictor(), defaults=InferConfig(**infer))


def test_prediction_options_are_exactly_the_infer_section():
    assert set(PredictOptions.model_fields) == set(InferConfig.model_fields)
    assert not {"window", "keep", "batch_size", "mode"} & {f.name for f in dataclasses.fields(Predictor)}


def test_options_not_given_are_the_checkpoints_and_none_means_not_given():
    predictor = _with_defaults(window=64, keep=48, tta=True, blend="cosine", confidence="max", cog=False)
    opts = PredictOptions.build(predictor)
    assert (opts.window, opts.keep, opts.tta, opts.blend, opts.confidence, opts.cog) == (64, 48, True, "cosine",
                                                                                        "max", False)
    opts = PredictOptions.build(predictor, tta=False, blend=None, window=96, keep=80)
    assert (opts.tta, opts.blend, opts.window, opts.keep) == (False, "cosine", 96, 80)
    assert PredictOptions.build(predictor, base=opts).window == 96  # built options are a base too


def test_batch_is_resolved_for_the_device_and_capped_by_low_memory():
    assert PredictOptions.build(_with_defaults()).batch_size == 1  # auto on a CPU
    assert PredictOptions.build(_with_defaults(batch_size=16)).batch_size == 16
    low = PredictOptions.build(_with_defaults(batch_size=16), low_memory=True)
    assert low.batch_size * low.window**2 <= LOW_MEMORY_PIXELS


def test_rules_between_options_name_what_was_given():
    predictor = _with_defaults(window=64, keep=48)
    with pytest.raises(RsSegError, match=r"^--keep 61: invalid border correction window 64 / keep 61: need keep > 0"):
        PredictOptions.build(predictor, keep=61)
    with pytest.raises(RsSegError, match=r"^--simplify 2.0: simplify and min_area shape the polygons"):
        PredictOptions.build(predictor, simplify=2.0)
    with pytest.raises(RsSegError, match=r"^--blend gauss: unknown blending 'gauss'; choose one of linear, cosine$"):
        PredictOptions.build(predictor, blend="gauss")
    with pytest.raises(RsSegError, match=r"^--batch-size 0: "):
        PredictOptions.build(predictor, batch_size=0)
    with pytest.raises(ValueError, match="disagreement needs tta"):  # the same rules for a YAML config
        InferConfig(disagreement=True)


def test_a_run_builds_its_options_once_and_configures_once_per_scene(tmp_path, monkeypatch):
    scenes = [write_geotiff(tmp_path / f"s{i}.tif", random_image(70, 90, seed=i)) for i in range(3)]
    predictor = _with_defaults(window=64, keep=48, tta=True)
    builds, configures = [], []
    build, configure = PredictOptions.build.__func__, PredictOptions.configure
    monkeypatch.setattr(PredictOptions, "build", classmethod(lambda cls, *a, **k: builds.append(1) or build(cls, *a, **k)))
    monkeypatch.setattr(PredictOptions, "configure", lambda self, p: configures.append(1) or configure(self, p))
    results = predict_files(predictor, scenes, tmp_path / "out", show_progress=False, stac=False)
    assert len(builds) == 1 and len(configures) == len(scenes)
    with rasterio.open(results[0]["classes"]) as src:
        tags = src.tags()
    assert (tags["rsseg_tta"], tags["rsseg_window"], tags["rsseg_keep"]) == ("true", "64", "48")
