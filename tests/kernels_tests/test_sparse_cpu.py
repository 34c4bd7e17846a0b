"""Our C++ BSR and CSR kernels and the plain-torch block_gather: numerics against dense over
block shapes (vector-sized, odd, non-square), empty rows and columns, and batch tails."""

from __future__ import annotations

import pytest
import torch
from sparsearch.kernels import KernelUnavailable, encode_weight, get_kernel
from sparsearch.kernels._sparse_cpu import build_sparse_cpu

from sparsearch.sparsity import block_mask, unstructured_mask

CPU = torch.device("cpu")
BLOCK_KERNELS = ("bsr_cpu", "block_gather", "csr_cpu")


@pytest.fixture(scope="module", autouse=True)
def built():
    assert build_sparse_cpu() is None


def run(kernel: str, weight, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    k = get_kernel(kernel)
    return k.linear(k.prepare(weight, device=CPU, dtype=torch.float32), x, bias)


def close(y: torch.Tensor, ref: torch.Tensor) -> bool:
    return y.shape == ref.shape and float((y - ref).abs().max()) <= 1e-5 * float(ref.abs().max())


# (block, block rows, block cols): the templated sizes 8/16/32/64, a generic height (4, 12)
# and non-square blocks on both paths, with block-row counts that split unevenly across
# threads.
BLOCK_CASES = [((8, 8), 5, 3), ((16, 16), 3, 5), ((32, 32), 3, 2), ((64, 16), 2, 3),
               ((4, 4), 7, 9), ((12, 4), 3, 5), ((16, 4), 5, 2), ((1, 8), 9, 3)]


@pytest.mark.parametrize(("block", "block_rows", "block_cols"), BLOCK_CASES,
                         ids=[f"{b[0]}x{b[1]}-{r}x{c}" for b, r, c in BLOCK_CASES])
@pytest.mark.parametrize("batch", [1, 2, 8, 13, 33])
@pytest.mark.parametrize("kernel", BLOCK_KERNELS)
def test_block_kernels_match_dense(kernel, block, block_rows, block_cols, batch):
    bh, bw = block
    generator = torch.Generator().manual_seed(batch)
    w = torch.randn(bh * block_rows, bw * block_cols, generator=generator)
    w = w * block_mask(w, 0.6, block=block)
    w[:bh] = 0.0  # an empty block row
    weight = encode_weight(w, "bsr", block=block)
    x = torch.randn(batch, w.shape[1], generator=generator)
    bias = torch.randn(w.shape[0], generator=generator)
    assert close(run(kernel, weight, x, bias), x @ w.T + bias)


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (7, 3), (33, 65), (130, 17)])
@pytest.mark.parametrize("batch", [1, 5, 16, 40])
def test_csr_cpu_matches_dense_on_odd_shapes(rows, cols, batch):
    generator = torch.Generator().manual_seed(rows + batch)
    w = torch.randn(rows, cols, generator=generator)
    w = w * unstructured_mask(w, 0.7)
    w[rows // 2] = 0.0  # an empty row
    w[:, 0] = 1.5  # a dense column, so no weight is all zero
    x = torch.randn(batch, cols, generator=generator)
    assert close(run("csr_cpu", encode_weight(w, "csr"), x), x @ w.T)


def test_all_zero_weight_and_empty_batch_give_zeros():
    w = torch.zeros(32, 64)
    for kernel, fmt in (("bsr_cpu", "bsr"), ("csr_cpu", "csr"), ("block_gather", "bsr")):
        weight = encode_weight(w, fmt, block=(16, 16)) if fmt == "bsr" else encode_weight(w, fmt)
        y = run(kernel, weight, torch.randn(3, 64))
        assert y.shape == (3, 32) and not y.any()
        assert run(kernel, weight, torch.randn(0, 64)).shape == (0, 32)


def test_kernels_refuse_wrong_inputs():
    w = torch.randn(32, 64)
    w = w * block_mask(w, 0.5, block=(16, 16))
    bsr = get_kernel("bsr_cpu").prepare(encode_weight(w, "bsr", block=(16, 16)), device=CPU,
                                        dtype=torch.float32)
    with pytest.raises(RuntimeError, match="fp32"):
        torch.ops.sparsearch_sparse.bsr_linear(torch.randn(2, 64).double(), bsr["values_t"],
                                               bsr["crow"], bsr["col"], 64)
    with pytest.raises(RuntimeError, match="x has 32 features, the weight 64"):
        torch.ops.sparsearch_sparse.bsr_linear(torch.randn(2, 32), bsr["values_t"],
                                               bsr["crow"], bsr["col"], 64)
    with pytest.raises(RuntimeError, match="outside the input"):
        torch.ops.sparsearch_sparse.bsr_linear(torch.randn(2, 32), bsr["values_t"],
                                               bsr["crow"], bsr["col"], 32)
    csr = get_kernel("csr_cpu").prepare(encode_weight(w, "csr"), device=CPU,
                                        dtype=torch.float32)
    with pytest.raises(RuntimeError, match="x has 48 features, the weight 64"):
        torch.ops.sparsearch_sparse.csr_linear(torch.randn(2, 48), csr["values"], csr["crow"],
                                               csr["col"], csr["in_features"])


def test_bsr_cpu_checks_indices_read_from_a_file():
    w = torch.randn(32, 64)
    weight = encode_weight(w * block_mask(w, 0.5, block=(16, 16)), "bsr", block=(16, 16))
    weight.tensors["col_indices"] = weight.tensors["col_indices"] + 4  # past the 4 block cols
    with pytest.raises(KernelUnavailable, match="do not fit"):
        get_kernel("bsr_cpu").prepare(weight, device=CPU, dtype=torch.float32)


def test_cpp_kernels_are_fp32_only():
    w = torch.randn(32, 64)
    weight = encode_weight(w * block_mask(w, 0.5, block=(16, 16)), "bsr", block=(16, 16))
    for kernel in ("bsr_cpu", "csr_cpu"):
        reason = get_kernel(kernel).unavailable_reason(weight, device=CPU, dtype=torch.float64)
        assert reason == "fp32 only, not torch.float64"
