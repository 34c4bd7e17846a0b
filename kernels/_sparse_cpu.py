"""Our block-sparse and CSR CPU kernels (C++, ``sparse_cpu.cpp``), built on first use.

torch's own CPU BSR and CSR kernels run far from the memory bound on some machines (the
same 4096^2 95% block-32 GEMV measured 4-13x over dense across machines of one kind,
against the ~20x that reading 5% of the weights allows; issue 13). These two kernels
read each kept weight once, in storage order, split rows across threads with
``at::parallel_for`` and keep their inner loops contiguous so they vectorise:

- ``bsr_cpu``: BSR weights, each block stored transposed (``[blocks, bw, bh]``).
- ``csr_cpu``: any sparse format as CSR with int32 column indices.

Both are fp32 only. If the build fails they report themselves unavailable (one warning)
and the export's measured dispatch uses the plain-torch kernels instead (``bsr``,
``block_gather``, ``csr``, ``gather_sum``).
"""

from __future__ import annotations

import torch

from ._cpp_build import build_extension
from ._formats import SparseWeight, quiet_sparse_beta, sparse_formats
from ._registry import Kernel, KernelUnavailable, Operands, register_kernel

__all__ = ["BsrCpuKernel", "CsrCpuKernel", "build_sparse_cpu"]


def build_sparse_cpu() -> str | None:
    """Builds (or loads the cached) extension once per process.

    Returns:
        None when ``torch.ops.sparsearch_sparse`` is ready, else why not.
    """
    return build_extension("sparse_cpu", what="the BSR/CSR C++ kernels",
                           fallback="sparse layers use the plain-torch kernels")


class _CppKernel(Kernel):
    devices = ("cpu",)

    def unavailable_reason(self, weight: SparseWeight, *, device: torch.device,
                           dtype: torch.dtype) -> str | None:
        reason = super().unavailable_reason(weight, device=device, dtype=dtype)
        if reason is not None:
            return reason
        if dtype != torch.float32:
            return f"fp32 only, not {dtype}"
        return build_sparse_cpu()

    def _ensure_built(self) -> None:
        reason = build_sparse_cpu()  # a fresh process loading an export gets here first
        if reason is not None:
            raise KernelUnavailable(reason)


@register_kernel("bsr_cpu")
class BsrCpuKernel(_CppKernel):
    """BSR on CPU, fp32 (C++ extension)."""

    formats = ("bsr",)

    def prepare(self, weight: SparseWeight, *, device: torch.device,
                dtype: torch.dtype) -> Operands:
        self._ensure_built()
        t = weight.tensors
        bh, bw = weight.params["block"]
        crow, col = t["crow_indices"].long(), t["col_indices"].long()
        if (crow.numel() != weight.shape[0] // bh + 1 or int(crow[-1]) != col.numel()
                or (col.numel() and not 0 <= int(col.min()) <= int(col.max()) < weight.shape[1] // bw)):
            raise KernelUnavailable("block indices do not fit the weight's shape")
        values_t = t["values"].float().reshape(-1, bh, bw).transpose(1, 2).contiguous()
        return {"values_t": values_t, "crow": crow.contiguous(), "col": col.contiguous(),
                "in_features": weight.shape[1]}

    def linear(self, operands: Operands, x: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        y = torch.ops.sparsearch_sparse.bsr_linear(x, operands["values_t"], operands["crow"],
                                                   operands["col"], operands["in_features"])
        return y if bias is None else y + bias


@register_kernel("csr_cpu")
class CsrCpuKernel(_CppKernel):
    """CSR on CPU, fp32, for any sparse format (C++ extension)."""

    formats = sparse_formats()

    def prepare(self, weight: SparseWeight, *, device: torch.device,
                dtype: torch.dtype) -> Operands:
        self._ensure_built()
        with quiet_sparse_beta():
            # to_sparse_csr drops explicit zeros (N:M padding, zero blocks' entries): they
            # would cost reads and FMAs for nothing.
            csr = weight.to_dense().float().to_sparse_csr()
        return {"values": csr.values().contiguous(),
                "crow": csr.crow_indices().long().contiguous(),
                "col": csr.col_indices().to(torch.int32).contiguous(),
                "in_features": weight.shape[1]}

    def linear(self, operands: Operands, x: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        y = torch.ops.sparsearch_sparse.csr_linear(x, operands["values"], operands["crow"],
                                                   operands["col"], operands["in_features"])
        return y if bias is None else y + bias
