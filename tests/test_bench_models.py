"""``benchmarks/models.py``: ``--set`` reaches every measured model's config."""

import argparse

import pytest
import torch
from tools import bench_module


def test_model_options_read_yaml_values_and_refuse_a_pair_without_equals():
    bench = bench_module("models")
    assert bench.model_options(["encoder=resnet18", "base_width=4", "pretrained=null"]) == {
        "encoder": "resnet18", "base_width": 4, "pretrained": None}
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        bench.model_options(["encoder"])


def test_run_models_builds_each_model_with_the_options(capsys):
    bench = bench_module("models")
    args = argparse.Namespace(models=["unet"], precision=["fp32"], steps=1, warmup=0, batch=1, size=32, bands=3,
                              classes=3, channels_last=False, options=[])
    bench.run_models(args, bench.model_configs(), torch.device("cpu"))
    args.options = ["base_width=4"]
    bench.run_models(args, bench.model_configs(), torch.device("cpu"))
    default, narrow = (float(line.split()[1].rstrip("M")) for line in capsys.readouterr().out.splitlines())
    assert 0 < narrow < default  # base width 4 against the default 16: fewer parameters
