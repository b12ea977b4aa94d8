"""``make gpu-check`` passes on a CPU-only machine by skipping its CUDA parts, saying so."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: run make gpu-check itself")
def test_gpu_check_skips_cleanly_without_cuda(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--work", str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "skipped: no CUDA device" in done.stdout
    assert not any(tmp_path.iterdir())  # nothing trained or written
