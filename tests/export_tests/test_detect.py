"""The zeros decide each layer's format: N:M (any N, M in 4..32), blocks, unstructured, dense."""

from __future__ import annotations

import pytest
import torch

from sparsearch.export._detect import detect_format
from sparsearch.sparsity import block_mask, channel_mask, nm_mask, unstructured_mask


@pytest.mark.parametrize(("n", "m"), [(1, 4), (1, 8), (2, 8), (3, 8), (1, 16), (4, 16), (1, 32)])
def test_nm_patterns_are_found(n, m):
    w = torch.randn(64, 128)
    layout, stored = detect_format(w * nm_mask(w, n, m))
    assert layout == "oi"
    assert (stored.format, stored.params) == ("nm", {"n": n, "m": m})


def test_2_4_in_a_cutlass_shape_is_semi24_else_nm():
    w = torch.randn(64, 128)
    assert detect_format(w * nm_mask(w, 2, 4))[1].format == "semi24"
    w = torch.randn(48, 128)  # 48 rows: not a multiple of 32
    assert detect_format(w * nm_mask(w, 2, 4))[1].format == "nm"


def test_coarser_group_of_the_same_ratio_is_not_preferred():
    w = torch.randn(32, 64)
    # A 1:4 weight is also 2:8 and 4:16; the smallest M describes it.
    assert detect_format(w * nm_mask(w, 1, 4))[1].params == {"n": 1, "m": 4}


def test_conv_nm_runs_along_input_channels():
    w = torch.randn(32, 16, 3, 3)
    layout, stored = detect_format(w * nm_mask(w, 1, 4))
    assert layout == "ohwi" and stored.params == {"n": 1, "m": 4}
    assert stored.shape == (32, 9 * 16)


@pytest.mark.parametrize("block", [(16, 16), (32, 32), (8, 8)])
def test_blocks_are_found(block):
    w = torch.randn(128, 256)
    layout, stored = detect_format(w * block_mask(w, 0.9, block=block))
    assert (layout, stored.format, stored.params) == ("oi", "bsr", {"block": list(block)})


def test_the_spec_block_shape_is_tried_first():
    w = torch.randn(64, 64)
    w = w * block_mask(w, 0.5, block=(2, 8))
    assert detect_format(w)[1].format == "csr"  # no square block the scan knows fits it
    assert detect_format(w, block_hint=(2, 8))[1].params == {"block": [2, 8]}


@pytest.mark.parametrize("sparsity", [0.9, 0.95, 0.7])
def test_unstructured_is_csr_not_a_loose_nm(sparsity):
    w = torch.randn(256, 256)
    assert detect_format(w * unstructured_mask(w, sparsity))[1].format == "csr"


def test_dense_and_lightly_pruned_weights_stay_dense():
    w = torch.randn(64, 64)
    assert detect_format(w)[1].format == "dense"
    assert detect_format(w * unstructured_mask(w, 0.2))[1].format == "dense"


def test_channel_pruning_is_stored_sparse():
    w = torch.randn(64, 64)
    assert detect_format(w * channel_mask(w, 0.75))[1].format in ("csr", "bsr")


def test_a_dense_tail_group_is_not_nm():
    w = torch.randn(32, 36)  # 36 = 4 * 8 + 4: nm_mask leaves the last 4 inputs dense
    assert detect_format(w * nm_mask(w, 1, 8))[1].format == "csr"
