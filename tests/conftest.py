"""Shared fixtures: a tiny synthetic dataset and a one-epoch checkpoint, made once per session."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a stray hub download must fail at once
# dataset caches (chip index, band statistics) go to a throw-away folder, not ~/.cache/rsseg
os.environ.setdefault("RSSEG_CACHE_DIR", tempfile.mkdtemp(prefix="rsseg-test-cache-"))

from pathlib import Path

import pytest

TINY_CONFIG = """\
data:
  root: {root}
  synthetic: {{train: 2, val: 1, test: 1, size: 192, seed: 3}}
  tile_size: 96
  batch_size: 4
model: {{base_width: 4, depth: 2}}
train: {{epochs: 1, threads: 1}}
output: {{dir: {runs}, name: tiny}}
"""


def pytest_report_header(config: pytest.Config) -> str:
    """What ``precision: auto`` means in this run: numbers compared by tests depend on it."""
    from rsseg.errors import RsSegError
    from rsseg.runtime import PRECISION_ENV, use_bf16

    try:
        auto = "bf16" if use_bf16("auto", "cpu") else "32"
    except RsSegError as exc:
        return f"rsseg precision: {exc}"
    return f"rsseg precision: auto = {auto} on CPU ({PRECISION_ENV}={os.environ.get(PRECISION_ENV) or 'unset'})"


@pytest.fixture(scope="session")
def tiny_config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("tiny")
    path = base / "tiny.yaml"
    path.write_text(TINY_CONFIG.format(root=base / "data", runs=base / "runs"))
    return path


@pytest.fixture(scope="session")
def tiny_run(tiny_config_path: Path):
    """A one-epoch training run on tiny synthetic data (the training smoke test's output)."""
    from rsseg.config import load_config
    from rsseg.training.train import train

    cfg = load_config(tiny_config_path)
    return train(cfg, config_name="tiny", progress=False)


@pytest.fixture(scope="session")
def trained(tiny_config_path):
    """The tiny config trained for 3 epochs (~10 s): the 1-epoch ``tiny_run`` still predicts
    one class everywhere, which would make agreement and seam checks vacuous."""
    from rsseg.config import load_config
    from rsseg.training.train import train

    cfg = load_config(tiny_config_path, ["train.epochs=3", "optim.lr=0.01", "output.name=tiny3"])
    return train(cfg, config_name="tiny3", progress=False).best_checkpoint


SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real imagery): skipped where absent, but a failure in CI."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real data folder {SHARED_DATA.resolve()} is missing in CI")
        pytest.skip("../shared/data not present")
    return SHARED_DATA.resolve()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread (and leave the shared cores to others).

    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors gain nothing from threads, and on a busy shared CPU two threads (torch's and,
    through open_session, onnxruntime's) spin-wait on each other: a module asks for one thread with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
