"""The shipped real-data configs and sweeps load and find their data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rsseg.config import load_config
from rsseg.data.datasets import get_source
from rsseg.experiment import load_sweep

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EXPECTED = {  # scenes per split (train, val, test)
    "dubai.yaml": (45, 9, 9),
    "loveda-sample.yaml": (2, 0, 1),  # val: [] (no validation split)
    "sentinel2-strzegom.yaml": (4, 0, 2),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_data_config_finds_its_scenes(name: str, shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(CONFIGS.parent)  # data.root is relative to the project root: ../shared/data/...
    cfg = load_config(CONFIGS / name, [f"data.cache_dir={tmp_path}"])
    assert Path(cfg.data.root).resolve().is_relative_to(shared_data)
    source = get_source(cfg.data)
    source.prepare(progress=False)
    splits = source.splits()
    counts = tuple(len(splits[split]) for split in ("train", "val", "test"))
    assert counts == EXPECTED[name]
    groups = [{s.group for s in splits[split]} for split in ("train", "val", "test")]
    assert not (groups[0] & groups[2]) and not (groups[1] & groups[2])  # no test ground in training


@pytest.mark.parametrize("sweep", sorted((CONFIGS / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_sweeps_expand_to_valid_configs(sweep: Path) -> None:
    loaded = load_sweep(sweep)
    assert loaded.runs
    for overrides in loaded.runs.values():
        load_config(loaded.base, [*loaded.common, *overrides])


def test_every_config_is_covered() -> None:
    assert {p.name for p in CONFIGS.glob("*.yaml")} == set(EXPECTED), os.listdir(CONFIGS)
