"""Every weight format stores a pruned matrix and gives back exactly that matrix."""

from __future__ import annotations

import pytest
import torch
from sparsearch.kernels import encode_weight, list_formats
from sparsearch.kernels._formats import nm_positions, nm_view

from sparsearch.sparsity import nm_mask

from .conftest import weight_in


def test_registry_lists_all_formats():
    assert list_formats() == ["bsr", "csr", "dense", "nm", "semi24"]


@pytest.mark.parametrize("fmt", list_formats())
def test_round_trip_is_exact(fmt):
    weight = weight_in(fmt)
    dense = weight.to_dense()
    again = encode_weight(dense, fmt, **({"block": (16, 16)} if fmt == "bsr" else weight.params))
    assert torch.equal(again.to_dense(), dense)
    assert weight.format == fmt and weight.shape == (64, 128)


@pytest.mark.parametrize("fmt", ["csr", "bsr", "nm", "semi24"])
def test_sparse_formats_store_less_than_dense(fmt):
    weight = weight_in(fmt)
    assert weight.nbytes < 64 * 128 * 4
    assert weight.nnz == int(torch.count_nonzero(weight.to_dense()))


def test_csr_indices_are_narrowed_for_the_file():
    weight = weight_in("csr")
    assert weight.tensors["col_indices"].dtype == torch.int16
    assert weight.tensors["crow_indices"].dtype == torch.int16
    wide = torch.zeros(2, 40000)
    wide[1, 39999] = 1.0
    stored = encode_weight(wide, "csr")
    assert stored.tensors["col_indices"].dtype == torch.int32
    assert torch.equal(stored.to_dense(), wide)


@pytest.mark.parametrize(("n", "m"), [(1, 4), (2, 4), (1, 8), (3, 8), (2, 16), (1, 32)])
def test_nm_stores_n_values_and_uint8_positions_per_group(n, m):
    w = torch.randn(24, 64)
    w = w * nm_mask(w, n, m)
    stored = encode_weight(w, "nm", n=n, m=m)
    assert stored.tensors["values"].shape == (24, 64 // m, n)
    assert stored.tensors["indices"].dtype == torch.uint8
    assert int(stored.tensors["indices"].max()) < m
    assert torch.equal(stored.to_dense(), w)


def test_nm_pads_groups_with_fewer_non_zeros():
    w = torch.zeros(2, 8)
    w[0, 5] = 3.0  # one non-zero where 2:4 allows two; the second row is empty
    assert nm_positions(w, 2, 4).tolist() == [[[0, 1], [0, 1]], [[0, 1], [0, 1]]]
    stored = encode_weight(w, "nm", n=2, m=4)
    assert stored.tensors["values"][0, 1].tolist() == [0.0, 3.0]
    assert torch.equal(stored.to_dense(), w)


def test_nm_rejects_weights_that_break_the_pattern():
    with pytest.raises(ValueError, match="more than 1 non-zeros of 4"):
        encode_weight(torch.ones(4, 8), "nm", n=1, m=4)
    with pytest.raises(ValueError, match="dividing"):
        encode_weight(torch.zeros(4, 10), "nm", n=1, m=4)


def test_bsr_rejects_a_block_that_does_not_tile():
    with pytest.raises(ValueError, match="does not tile"):
        encode_weight(torch.zeros(30, 32), "bsr", block=(16, 16))


def test_semi24_keeps_fp32_values_fp16_would_flush():
    w = torch.randn(32, 64)
    w = w * nm_mask(w, 2, 4)
    w[0, w[0] != 0] = 1e-9  # below fp16's smallest subnormal
    stored = encode_weight(w, "semi24")
    assert stored.tensors["values"].dtype == torch.float32
    assert stored.tensors["meta"].dtype == torch.int16
    assert torch.equal(stored.to_dense(), w)


def test_semi24_follows_cutlass_shape_rules():
    w = torch.randn(16, 64)
    with pytest.raises(ValueError, match="multiples of"):
        encode_weight(w * nm_mask(w, 2, 4), "semi24")


def test_nm_view_reads_semi24_as_2_4():
    stored = weight_in("semi24")
    values, positions, n, m = nm_view(stored)
    assert (n, m) == (2, 4)
    rebuilt = encode_weight(stored.to_dense(), "nm", n=2, m=4)
    assert torch.equal(values, rebuilt.tensors["values"])
    assert torch.equal(positions, rebuilt.tensors["indices"])
