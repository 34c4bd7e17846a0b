"""Our N:M CPU kernel (C++, ``nm_cpu.cpp``), built on first use and cached.

torch has no CPU kernel for N:M (1:4, 1:8, 2:8, 1:16, ...); CSR over an N:M weight pays for
general indices and loses at batch 1. This kernel keeps one uint8 position per weight and
picks inputs with in-register permutes (see the C++ file for the layout).

The extension is compiled the first time a layer asks for it (about 20 s on two cores) and
cached (``_cpp_build``). If the build fails the kernel reports itself unavailable, with one
warning, and N:M layers run on the plain-torch ``gather_sum`` kernel instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._cpp_build import build_extension
from ._formats import SparseWeight, nm_view
from ._registry import Kernel, KernelUnavailable, Operands, register_kernel

__all__ = ["NMCpuKernel", "build_nm_cpu", "pack_nm_rows"]

_ROWS = 8  # rows per vector in the C++ layout
_SUPPORTED_M = (4, 8, 16, 32)


def build_nm_cpu() -> str | None:
    """Builds (or loads the cached) extension once per process.

    Returns:
        None when ``torch.ops.sparsearch_kernels.nm_linear`` is ready, else why not.
    """
    return build_extension("nm_cpu", what="the N:M C++ kernel",
                           fallback="N:M layers use the plain-torch gather_sum kernel")


def pack_nm_rows(values: torch.Tensor, positions: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``[out, groups, n]`` -> the C++ layout ``[blocks, groups, n, 8]`` (rows padded to 8)."""
    rows, groups, n = values.shape
    pad = -rows % _ROWS
    blocks = (rows + pad) // _ROWS

    def interleave(t: torch.Tensor) -> torch.Tensor:
        t = F.pad(t, (0, 0, 0, 0, 0, pad))
        return t.reshape(blocks, _ROWS, groups, n).permute(0, 2, 3, 1).contiguous()

    return interleave(values), interleave(positions.to(torch.uint8))


@register_kernel("nm_cpu")
class NMCpuKernel(Kernel):
    """N:M on CPU, fp32, M in 4, 8, 16, 32 (C++ extension)."""

    formats = ("nm", "semi24")
    devices = ("cpu",)

    def unavailable_reason(self, weight: SparseWeight, *, device: torch.device,
                           dtype: torch.dtype) -> str | None:
        reason = super().unavailable_reason(weight, device=device, dtype=dtype)
        if reason is not None:
            return reason
        if dtype != torch.float32:
            return f"fp32 only, not {dtype}"
        if weight.params.get("m") not in _SUPPORTED_M:
            return f"M must be one of {list(_SUPPORTED_M)}"
        return build_nm_cpu()

    def prepare(self, weight: SparseWeight, *, device: torch.device,
                dtype: torch.dtype) -> Operands:
        reason = build_nm_cpu()  # a fresh process loading an export gets here first
        if reason is not None:
            raise KernelUnavailable(reason)
        values, positions, _, m = nm_view(weight)
        packed_values, packed_positions = pack_nm_rows(values.float(), positions)
        return {"values": packed_values, "indices": packed_positions,
                "out_features": weight.shape[0], "m": m}

    def linear(self, operands: Operands, x: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        y = torch.ops.sparsearch_kernels.nm_linear(
            x, operands["values"], operands["indices"], operands["out_features"], operands["m"])
        return y if bias is None else y.add_(bias)
