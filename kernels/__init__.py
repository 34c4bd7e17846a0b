"""Sparse kernels: weight formats and one registry of kernels, each with its formats and devices.

Formats (``list_formats()``): dense, csr, bsr, nm (values + uint8 positions), semi24 (2:4
with CUTLASS metadata). Kernels (``list_kernels()``):

======================  =========  ===============================================
kernel                  devices    formats
======================  =========  ===============================================
dense                   cpu, cuda  all (decompressed ``F.linear``; the baseline)
csr                     cpu, cuda  csr, bsr, nm, semi24 (torch CSR, ``W @ x.T``)
bsr                     cpu, cuda  bsr (torch BSR, ``W @ x.T``)
gather_sum              cpu, cuda  csr, bsr, nm, semi24 (``F.embedding_bag`` SpMM)
block_gather            cpu, cuda  bsr (gather + batched block matmul + ``index_add_``)
nm_cpu                  cpu        nm, semi24 (our C++ N:M kernel, built on first use)
bsr_cpu                 cpu        bsr (our C++ block-sparse kernel, built on first use)
csr_cpu                 cpu        csr, bsr, nm, semi24 (our C++ CSR kernel, ditto)
semi_structured         cuda       2:4 in fp16/bf16 (``to_sparse_semi_structured``)
nm_triton               cuda       nm, semi24 (our Triton N:M kernel)
======================  =========  ===============================================

Which kernel a layer uses is not decided here: ``sparsearch.export`` times every
applicable kernel against dense per layer and batch size, and keeps the fastest.
"""

from . import (  # noqa: F401 (fill the registry)
    _nm_cpu,
    _nm_triton,
    _semi_structured,
    _sparse_cpu,
    _torch_kernels,
)
from ._formats import (
    SparseWeight,
    WeightFormat,
    encode_weight,
    get_format,
    list_formats,
    register_format,
)
from ._registry import (
    Kernel,
    KernelUnavailable,
    Operands,
    get_kernel,
    kernels_for,
    list_kernels,
    register_kernel,
)

# What a user calls or implements to add a kernel or format; builds, layouts and the
# format-internal views are imported from their modules by the code that needs them.
__all__ = [
    "Kernel",
    "KernelUnavailable",
    "Operands",
    "SparseWeight",
    "WeightFormat",
    "encode_weight",
    "get_format",
    "get_kernel",
    "kernels_for",
    "list_formats",
    "list_kernels",
    "register_format",
    "register_kernel",
]
