"""benchmarks/gpu_check.sh on a machine without CUDA: says so and exits 0 (so CI can run it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: run the script")
def test_gpu_check_without_cuda_says_so_and_succeeds(tmp_path):
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    assert "no CUDA GPU on this machine" in done.stdout
    assert not (tmp_path / "out").exists()  # nothing was run
