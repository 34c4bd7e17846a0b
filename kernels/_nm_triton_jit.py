"""Triton source of the general N:M CUDA kernel (imported only when it runs).

Each program computes a ``[BLOCK_B, BLOCK_O]`` tile of ``y = x @ W.T``. For every tile of
``BLOCK_G`` groups it rebuilds the dense ``[BLOCK_O, BLOCK_G * M]`` slice of W in registers
from the compressed values and positions (``w[o, g, p] = sum_n v[o, g, n] [pos[o, g, n] == p]``)
and feeds it to ``tl.dot``: memory traffic is that of the compressed weight, the math runs
on tensor cores. Runs on CPU tensors under ``TRITON_INTERPRET=1`` for numerics tests.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def nm_linear_kernel(
    x_ptr, values_ptr, positions_ptr, y_ptr,
    batch, out_features, groups,
    stride_xb, stride_yb,
    N: tl.constexpr, M: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_G: tl.constexpr,
    FP32_IEEE: tl.constexpr,
):
    rb = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    ro = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    rn = tl.arange(0, N)
    rp = tl.arange(0, M)
    acc = tl.zeros((BLOCK_B, BLOCK_O), dtype=tl.float32)
    for g0 in range(0, groups, BLOCK_G):
        rg = g0 + tl.arange(0, BLOCK_G)
        offs = ro[:, None, None] * (groups * N) + rg[None, :, None] * N + rn[None, None, :]
        live = (ro[:, None, None] < out_features) & (rg[None, :, None] < groups)
        v = tl.load(values_ptr + offs, mask=live, other=0.0)
        pos = tl.load(positions_ptr + offs, mask=live, other=0).to(tl.int32)
        hit = pos[:, :, :, None] == rp[None, None, None, :]
        w = tl.sum(tl.where(hit, v[:, :, :, None], 0.0), axis=2)
        w = tl.reshape(w, (BLOCK_O, BLOCK_G * M))
        rk = g0 * M + tl.arange(0, BLOCK_G * M)
        x = tl.load(x_ptr + rb[:, None] * stride_xb + rk[None, :],
                    mask=(rb[:, None] < batch) & (rk[None, :] < groups * M), other=0.0)
        w = w.to(x.dtype)
        if FP32_IEEE:
            acc += tl.dot(x, tl.trans(w), input_precision="ieee")
        else:
            acc += tl.dot(x, tl.trans(w))
    y_offs = rb[:, None] * stride_yb + ro[None, :]
    tl.store(y_ptr + y_offs, acc.to(y_ptr.dtype.element_ty),
             mask=(rb[:, None] < batch) & (ro[None, :] < out_features))


def launch(x, values, positions, y, *, m: int) -> None:
    """Runs the kernel: ``x [B, G*M]``, ``values``/``positions`` ``[O, G, N]`` (N a power of 2)."""
    batch, _ = x.shape
    out_features, groups, n = values.shape
    block_b = 16 if batch <= 16 else 64
    block_o = 64
    block_g = max(1, 64 // m)
    grid = (triton.cdiv(batch, block_b), triton.cdiv(out_features, block_o))
    nm_linear_kernel[grid](
        x, values, positions, y, batch, out_features, groups, x.stride(0), y.stride(0),
        N=n, M=m, BLOCK_B=block_b, BLOCK_O=block_o, BLOCK_G=block_g,
        FP32_IEEE=x.dtype == torch.float32,
    )
