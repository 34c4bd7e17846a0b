"""Every registered kernel computes x @ W.T (+ bias) to fp32 tolerance on the formats it serves."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sparsearch.kernels import (
    Kernel,
    KernelUnavailable,
    WeightFormat,
    get_format,
    get_kernel,
    kernels_for,
    list_formats,
    list_kernels,
    register_format,
    register_kernel,
)
from sparsearch.kernels._formats import FORMATS
from sparsearch.kernels._registry import KERNELS

from sparsearch.catalogue import UnknownName

from .conftest import weight_in

CPU = torch.device("cpu")
CPU_CASES = [(kernel, fmt) for kernel in list_kernels(device="cpu")
             for fmt in get_kernel(kernel).formats]


def assert_matches_dense(y: torch.Tensor, ref: torch.Tensor, rtol: float = 1e-5) -> None:
    scale = float(ref.abs().max())
    assert y.shape == ref.shape
    assert float((y - ref).abs().max()) <= rtol * scale


def test_registry_states_formats_and_devices():
    assert set(list_kernels()) >= {"dense", "csr", "bsr", "gather_sum", "block_gather",
                                   "nm_cpu", "bsr_cpu", "csr_cpu", "semi_structured",
                                   "nm_triton"}
    for name in list_kernels():
        kernel = get_kernel(name)
        assert set(kernel.formats) <= set(list_formats())
        assert set(kernel.devices) <= {"cpu", "cuda"}
    assert list_kernels(format="bsr", device="cpu") == ["block_gather", "bsr", "bsr_cpu", "csr",
                                                        "csr_cpu", "dense", "gather_sum"]
    assert list_kernels(device="cuda") == ["block_gather", "bsr", "csr", "dense", "gather_sum",
                                           "nm_triton", "semi_structured"]
    with pytest.raises(ValueError, match="kernel must be one of"):
        get_kernel("nope")


def test_kernels_and_formats_registered_twice_warn_and_the_later_wins():
    class Twice(Kernel):
        formats = ("dense",)
        devices = ("cpu",)

        def prepare(self, weight, *, device, dtype):
            return {"weight": weight.to_dense()}

        def linear(self, operands, x, bias=None):
            return F.linear(x, operands["weight"], bias)

    class Again(Twice):
        pass

    class Dense(WeightFormat):
        def encode(self, weight, **params):
            return get_format("dense").encode(weight)

        def decode(self, weight):
            return weight.tensors["weight"]

    try:
        register_kernel("twice")(Twice)
        with pytest.warns(RuntimeWarning, match="kernel 'twice' registered twice"):
            register_kernel("twice")(Again)
        assert type(get_kernel("twice")) is Again
        assert "twice" in list_kernels(format="dense", device="cpu")
        register_format("twice")(Dense)
        with pytest.warns(RuntimeWarning, match="weight format 'twice' registered twice"):
            register_format("twice")(Dense)
        assert list_formats() == sorted(list_formats()) and "twice" in list_formats()
    finally:
        KERNELS.unregister("twice")
        FORMATS.unregister("twice")
    with pytest.raises(UnknownName, match="^weight format must be one of .*, got 'twice'$"):
        get_format("twice")
    assert "twice" not in list_kernels()


@pytest.mark.parametrize(("kernel", "fmt"), CPU_CASES, ids=[f"{k}-{f}" for k, f in CPU_CASES])
@pytest.mark.parametrize("batch", [1, 3, 9, 33])
def test_cpu_kernel_matches_dense(kernel, fmt, batch):
    # 60 rows: not a multiple of the C++ kernel's 8-row blocks (BSR and 2:4 need 64).
    rows = 64 if fmt in ("bsr", "semi24") else 60
    weight = weight_in(fmt, rows=rows, cols=128)
    k = get_kernel(kernel)
    assert k.unavailable_reason(weight, device=CPU, dtype=torch.float32) is None
    operands = k.prepare(weight, device=CPU, dtype=torch.float32)
    x = torch.randn(batch, 128)
    bias = torch.randn(rows)
    dense = weight.to_dense()
    assert_matches_dense(k.linear(operands, x, bias), x @ dense.T + bias)
    assert_matches_dense(k.linear(operands, x), x @ dense.T)


def test_kernels_accept_a_transposed_input():
    weight = weight_in("nm", rows=40, cols=64)
    x = torch.randn(64, 5).T  # [5, 64], not contiguous
    for kernel in ("csr", "gather_sum", "nm_cpu", "csr_cpu", "dense"):
        k = get_kernel(kernel)
        y = k.linear(k.prepare(weight, device=CPU, dtype=torch.float32), x)
        assert_matches_dense(y, x @ weight.to_dense().T)


def test_kernels_for_says_why_a_kernel_does_not_apply():
    usable, skipped = kernels_for(weight_in("bsr"), device="cpu")
    assert [k.name for k in usable] == ["dense", "block_gather", "bsr", "bsr_cpu", "csr",
                                        "csr_cpu", "gather_sum"]
    assert "not 'bsr'" in skipped["nm_cpu"]
    assert "not cpu" in kernels_for(weight_in("semi24"), device="cpu")[1]["semi_structured"]
    usable, skipped = kernels_for(weight_in("dense"), device="cpu")
    assert [k.name for k in usable] == ["dense"]


def test_semi_structured_needs_cuda_and_half_precision():
    kernel = get_kernel("semi_structured")
    weight = weight_in("semi24")
    assert "not cpu" in kernel.unavailable_reason(weight, device=CPU, dtype=torch.float16)
    cuda = torch.device("cuda")
    assert "fp16/bf16 only" in kernel.unavailable_reason(weight, device=cuda,
                                                         dtype=torch.float32)
    assert kernel.unavailable_reason(weight_in("nm"), device=cuda,
                                     dtype=torch.float16) == "2:4 only"


def test_prepare_failure_is_a_kernel_unavailable_error():
    assert issubclass(KernelUnavailable, RuntimeError)


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_semi_structured_on_cuda_matches_dense(dtype):
    cuda = torch.device("cuda")
    weight = weight_in("semi24", rows=128, cols=256)
    kernel = get_kernel("semi_structured")
    assert kernel.unavailable_reason(weight, device=cuda, dtype=dtype) is None
    operands = kernel.prepare(weight, device=cuda, dtype=dtype)
    x = torch.randn(64, 256, device=cuda, dtype=dtype)
    ref = (x.float() @ weight.to_dense().to(cuda).T)
    assert_matches_dense(kernel.linear(operands, x).float(), ref, rtol=1e-2)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("fmt", ["nm", "semi24"])
@pytest.mark.parametrize("kernel", ["nm_triton", "csr", "gather_sum", "dense"])
def test_cuda_kernels_match_dense_in_fp32(kernel, fmt):
    cuda = torch.device("cuda")
    weight = weight_in(fmt, rows=96, cols=256)
    k = get_kernel(kernel)
    operands = k.prepare(weight, device=cuda, dtype=torch.float32)
    for batch in (1, 17, 64):
        x = torch.randn(batch, 256, device=cuda)
        assert_matches_dense(k.linear(operands, x), x @ weight.to_dense().to(cuda).T)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("batch", [1, 17, 64])
def test_block_gather_on_cuda_matches_dense(batch):
    cuda = torch.device("cuda")
    weight = weight_in("bsr", rows=96, cols=256)
    k = get_kernel("block_gather")
    operands = k.prepare(weight, device=cuda, dtype=torch.float32)
    x = torch.randn(batch, 256, device=cuda)
    assert_matches_dense(k.linear(operands, x), x @ weight.to_dense().to(cuda).T)
