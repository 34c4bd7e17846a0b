"""Weights in every format, built from sparsearch's own masks."""

from __future__ import annotations

import pytest
import torch
from sparsearch.kernels import SparseWeight, encode_weight

from sparsearch.sparsity import block_mask, nm_mask, unstructured_mask


def masked(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return weight * mask


def weight_in(fmt: str, *, rows: int = 64, cols: int = 128, seed: int = 0) -> SparseWeight:
    """A random ``rows x cols`` weight pruned so that ``fmt`` fits it, encoded as ``fmt``."""
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))
    if fmt == "dense":
        return encode_weight(w, "dense")
    if fmt == "csr":
        return encode_weight(masked(w, unstructured_mask(w, 0.9)), "csr")
    if fmt == "bsr":
        return encode_weight(masked(w, block_mask(w, 0.75, block=(16, 16))), "bsr", block=(16, 16))
    if fmt == "nm":
        return encode_weight(masked(w, nm_mask(w, 1, 8)), "nm", n=1, m=8)
    if fmt == "semi24":
        return encode_weight(masked(w, nm_mask(w, 2, 4)), "semi24")
    raise ValueError(fmt)


@pytest.fixture(params=["dense", "csr", "bsr", "nm", "semi24"])
def any_weight(request) -> SparseWeight:
    return weight_in(request.param)


@pytest.fixture(autouse=True)
def one_thread():
    """Tests need real timings, not fast ones: on one thread, tiny ops do not stall on
    OpenMP barriers when other processes share the two cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
