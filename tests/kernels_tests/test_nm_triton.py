"""The Triton N:M kernel's numerics, on CPU under TRITON_INTERPRET=1 (small sizes), and on CUDA."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from sparsearch.kernels._nm_triton import pad_nm_slots

REPO = Path(__file__).resolve().parents[2]
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                  reason="triton is not installed")

# (n, m, out, in, batch): N = 3 is padded to 4 slots; odd rows and batches hit the masks.
CASES = [(1, 8, 70, 64, 3), (2, 4, 64, 128, 17), (3, 8, 33, 64, 1), (1, 32, 16, 64, 5),
         (2, 16, 20, 96, 2), (1, 4, 65, 64, 20)]

SCRIPT = """
    import json, sys, torch
    from sparsearch.kernels import encode_weight
    from sparsearch.kernels._formats import nm_view
    from sparsearch.kernels._nm_triton import nm_linear_triton, pad_nm_slots
    from sparsearch.sparsity import nm_mask
    torch.manual_seed(0)
    errors = []
    for n, m, rows, cols, batch in json.loads(sys.argv[1]):
        w = torch.randn(rows, cols)
        w = w * nm_mask(w, n, m)
        values, positions, _, _ = nm_view(encode_weight(w, "nm", n=n, m=m))
        values, positions = pad_nm_slots(values, positions)
        x = torch.randn(batch, cols)
        y = nm_linear_triton(x, values, positions, m=m)
        ref = x @ w.T
        errors.append([list(y.shape), float((y - ref).abs().max() / ref.abs().max())])
    print(json.dumps(errors))
"""


def test_pad_nm_slots_rounds_n_up_to_a_power_of_two():
    values, positions = pad_nm_slots(torch.ones(4, 2, 3), torch.ones(4, 2, 3, dtype=torch.uint8))
    assert values.shape == (4, 2, 4) and float(values[..., 3].abs().sum()) == 0.0
    assert positions.dtype == torch.uint8
    same, _ = pad_nm_slots(torch.ones(4, 2, 2), torch.zeros(4, 2, 2))
    assert same.shape == (4, 2, 2)


@needs_triton
def test_triton_kernel_matches_dense_in_the_interpreter():
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), json.dumps(CASES)], cwd=REPO,
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TRITON_INTERPRET": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    for (n, m, rows, _, batch), (shape, error) in zip(CASES, errors):
        assert shape == [batch, rows]
        assert error <= 1e-5, f"{n}:{m} relative error {error}"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@needs_triton
def test_triton_kernel_on_cuda_in_half_precision():
    from sparsearch.kernels import encode_weight
    from sparsearch.kernels._formats import nm_view
    from sparsearch.kernels._nm_triton import nm_linear_triton

    from sparsearch.sparsity import nm_mask

    w = torch.randn(256, 512)
    w = w * nm_mask(w, 1, 8)
    values, positions, _, _ = nm_view(encode_weight(w, "nm", n=1, m=8))
    values, positions = pad_nm_slots(values.half().cuda(), positions.cuda())
    x = torch.randn(33, 512, device="cuda", dtype=torch.float16)
    y = nm_linear_triton(x, values, positions, m=8).float()
    ref = x.float() @ w.cuda().half().float().T
    assert float((y - ref).abs().max() / ref.abs().max()) <= 1e-2
