"""CUDA 2:4 through torch's semi-structured sparse tensors (sparse tensor cores).

``torch.sparse.to_sparse_semi_structured`` wraps cuSPARSELt or CUTLASS. It is CUDA-only,
2-D, contiguous, and needs both weight dims to be multiples of the backend's minimum
(CUTLASS fp16/bf16: 32 x 64; cuSPARSELt: 16 x 16). fp32 would be 1:2 in hardware, not 2:4,
so this kernel only serves fp16/bf16 models (``load(..., dtype=torch.float16)``). Dense
inputs are padded by torch itself, which is why batch 1 often loses (pytorch#111339); the
dispatcher measures that rather than assuming.

A ``semi24`` weight carries CUTLASS metadata already, so with the CUTLASS backend the
tensor is wrapped without recompressing; otherwise it is compressed from the dense weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._formats import SparseWeight
from ._registry import Kernel, KernelUnavailable, Operands, register_kernel

__all__ = ["SemiStructuredKernel"]

_DTYPES = (torch.float16, torch.bfloat16)


def _backend() -> type:
    from torch.sparse import (
        SparseSemiStructuredTensor,
        SparseSemiStructuredTensorCUSPARSELT,
        SparseSemiStructuredTensorCUTLASS,
    )

    if SparseSemiStructuredTensor._FORCE_CUTLASS or not torch.backends.cusparselt.is_available():
        return SparseSemiStructuredTensorCUTLASS
    return SparseSemiStructuredTensorCUSPARSELT


@register_kernel("semi_structured")
class SemiStructuredKernel(Kernel):
    """2:4 on sparse tensor cores (fp16/bf16, CUDA)."""

    formats = ("semi24", "nm")
    devices = ("cuda",)

    def unavailable_reason(self, weight: SparseWeight, *, device: torch.device,
                           dtype: torch.dtype) -> str | None:
        reason = super().unavailable_reason(weight, device=device, dtype=dtype)
        if reason is not None:
            return reason
        if (weight.params.get("n"), weight.params.get("m")) != (2, 4):
            return "2:4 only"
        if dtype not in _DTYPES:
            return f"fp16/bf16 only (fp32 is 1:2 in hardware), not {dtype}"
        limits = _backend()._DTYPE_SHAPE_CONSTRAINTS[dtype]
        rows, cols = weight.shape
        min_rows, min_cols = limits.sparse_min_rows, limits.sparse_min_cols
        if rows % min_rows or cols % min_cols:
            return f"shape {rows}x{cols} is not a multiple of ({min_rows}, {min_cols})"
        return None

    def prepare(self, weight: SparseWeight, *, device: torch.device,
                dtype: torch.dtype) -> Operands:
        from torch.sparse import SparseSemiStructuredTensorCUTLASS, to_sparse_semi_structured

        backend = _backend()
        try:
            if weight.format == "semi24" and backend is SparseSemiStructuredTensorCUTLASS:
                t = weight.tensors
                sparse = SparseSemiStructuredTensorCUTLASS(
                    torch.Size(weight.shape), packed=t["values"].to(device=device, dtype=dtype),
                    meta=t["meta"].to(device), packed_t=None, meta_t=None,
                    compressed_swizzled_bitmask=None)
            else:
                dense = weight.to_dense().to(device=device, dtype=dtype).contiguous()
                # to_sparse_semi_structured always picks cuSPARSELt unless CUTLASS is forced,
                # and raises where cuSPARSELt is missing (pytorch#115077).
                sparse = (to_sparse_semi_structured(dense)
                          if backend is not SparseSemiStructuredTensorCUTLASS
                          else SparseSemiStructuredTensorCUTLASS.from_dense(dense))
        except (RuntimeError, ValueError) as err:
            raise KernelUnavailable(f"semi-structured conversion failed: {err}") from err
        return {"weight": sparse}

    def linear(self, operands: Operands, x: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        return F.linear(x, operands["weight"], bias)
