"""General N:M on CUDA with a Triton kernel (``_nm_triton_jit.py``).

Serves every N:M with M in 4, 8, 16, 32 (semi-structured tensors only do 2:4). N is padded
to a power of two with zero-valued slots, since Triton ranges must be powers of two.
fp32 runs with IEEE dot products (no TF32), so outputs match the dense model to fp32
tolerance.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F

from ._formats import SparseWeight, nm_view
from ._registry import Kernel, Operands, register_kernel

__all__ = ["NMTritonKernel", "nm_linear_triton", "pad_nm_slots"]

_SUPPORTED_M = (4, 8, 16, 32)


def pad_nm_slots(values: torch.Tensor, positions: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pads the N slots of ``[out, groups, n]`` to a power of two with zero values."""
    n = values.shape[-1]
    pad = (1 << (n - 1).bit_length()) - n
    return (F.pad(values, (0, pad)).contiguous(),
            F.pad(positions.to(torch.uint8), (0, pad)).contiguous())


def nm_linear_triton(x: torch.Tensor, values: torch.Tensor, positions: torch.Tensor, *,
                     m: int) -> torch.Tensor:
    """``x [B, G*M] -> [B, out]`` for N:M ``values``/``positions`` ``[out, G, N]``.

    N must be a power of two (see ``pad_nm_slots``). Works on CUDA tensors, and on CPU
    tensors under ``TRITON_INTERPRET=1``.
    """
    from . import _nm_triton_jit

    x = x.contiguous()
    y = torch.empty(x.shape[0], values.shape[0], device=x.device, dtype=x.dtype)
    _nm_triton_jit.launch(x, values, positions, y, m=m)
    return y


@register_kernel("nm_triton")
class NMTritonKernel(Kernel):
    """N:M on CUDA: decompress tiles in registers, multiply on tensor cores (Triton)."""

    formats = ("nm", "semi24")
    devices = ("cuda",)

    def unavailable_reason(self, weight: SparseWeight, *, device: torch.device,
                           dtype: torch.dtype) -> str | None:
        reason = super().unavailable_reason(weight, device=device, dtype=dtype)
        if reason is not None:
            return reason
        if importlib.util.find_spec("triton") is None:
            return "triton is not installed"
        if weight.params.get("m") not in _SUPPORTED_M:
            return f"M must be one of {list(_SUPPORTED_M)}"
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            return f"fp32/fp16/bf16 only, not {dtype}"
        return None

    def prepare(self, weight: SparseWeight, *, device: torch.device,
                dtype: torch.dtype) -> Operands:
        values, positions, _, m = nm_view(weight)
        values, positions = pad_nm_slots(values.to(dtype), positions)
        return {"values": values.to(device), "positions": positions.to(device), "m": m}

    def linear(self, operands: Operands, x: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        y = nm_linear_triton(x, operands["values"], operands["positions"], m=operands["m"])
        return y if bias is None else y.add_(bias)
