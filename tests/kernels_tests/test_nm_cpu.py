"""Our C++ N:M kernel: numerics over every M, odd shapes and batch tails.

Building in a fresh process, reusing the cached build, and falling back when the build fails
are tested where they matter, on load: tests/export_tests/test_save_load.py.
"""

from __future__ import annotations

import pytest
import torch
from sparsearch.kernels import encode_weight, kernels_for
from sparsearch.kernels._nm_cpu import build_nm_cpu, pack_nm_rows

from sparsearch.sparsity import nm_mask


def nm_op(x, values, positions, rows, m):
    packed_values, packed_positions = pack_nm_rows(values, positions)
    return torch.ops.sparsearch_kernels.nm_linear(x, packed_values, packed_positions, rows, m)


@pytest.fixture(scope="module", autouse=True)
def built():
    assert build_nm_cpu() is None


@pytest.mark.parametrize(("n", "m"), [(1, 4), (2, 4), (3, 4), (1, 8), (3, 8), (5, 8),
                                      (1, 16), (2, 16), (1, 32), (4, 32)])
@pytest.mark.parametrize("batch", [1, 2, 7, 8, 19])
def test_matches_dense(n, m, batch):
    rows, cols = 45, 4 * m
    w = torch.randn(rows, cols)
    w = w * nm_mask(w, n, m)
    stored = encode_weight(w, "nm", n=n, m=m)
    x = torch.randn(batch, cols)
    y = nm_op(x, stored.tensors["values"], stored.tensors["indices"], rows, m)
    ref = x @ w.T
    assert y.shape == (batch, rows)
    assert float((y - ref).abs().max()) <= 1e-5 * float(ref.abs().max())


def test_pack_puts_eight_rows_side_by_side():
    values = torch.arange(10 * 3 * 2, dtype=torch.float32).reshape(10, 3, 2)
    positions = torch.zeros(10, 3, 2, dtype=torch.uint8)
    packed, packed_positions = pack_nm_rows(values, positions)
    assert packed.shape == (2, 3, 2, 8) and packed_positions.dtype == torch.uint8
    assert torch.equal(packed[0, 1, 0], values[:8, 1, 0])
    assert torch.equal(packed[1, 2, 1, :2], values[8:, 2, 1])
    assert float(packed[1, 2, 1, 2:].abs().sum()) == 0.0  # padded rows are zero


def test_empty_batch_and_bad_inputs():
    w = torch.randn(8, 16)
    stored = encode_weight(w * nm_mask(w, 1, 4), "nm", n=1, m=4)
    values, positions = stored.tensors["values"], stored.tensors["indices"]
    assert nm_op(torch.randn(0, 16), values, positions, 8, 4).shape == (0, 8)
    with pytest.raises(RuntimeError, match="fp32"):
        nm_op(torch.randn(2, 16).double(), values, positions, 8, 4)
    with pytest.raises(RuntimeError, match="M must be 4, 8, 16 or 32"):
        nm_op(torch.randn(2, 4 * 6), values, positions, 8, 6)
    with pytest.raises(RuntimeError, match="groups \\* m != in_features"):
        nm_op(torch.randn(2, 20), values, positions, 8, 4)


def test_kernels_for_offers_nm_cpu_for_supported_group_sizes():
    w = torch.zeros(8, 48)
    w[:, ::6] = 1.0
    usable, skipped = kernels_for(encode_weight(w, "nm", n=1, m=6), device="cpu")
    assert "nm_cpu" not in [k.name for k in usable]
    assert "M must be one of" in skipped["nm_cpu"]
