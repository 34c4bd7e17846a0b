"""Kernels made of stock torch ops: dense, torch CSR and BSR, and an embedding-bag SpMM.

- dense: ``F.linear``; the baseline every sparse kernel is timed against.
- csr / bsr: torch's sparse layouts in the fast orientation ``W @ x.T`` (on CPU
  ``F.linear(x, W_csr)`` is 3-5x slower for batch >= 32, see
  shared/reference/cpu_kernels.md). The result is the transposed view, which the next
  layer's ``x.T`` reads as contiguous again.
- gather_sum: ``F.embedding_bag(cols, x.T, offsets, per_sample_weights=values, mode="sum")``
  computes ``y[:, o] = sum_k v[o, k] * x[:, cols[o, k]]``, i.e. SpMM with the input columns
  as the embedding table. torch runs it on fbgemm's EmbeddingSpMDM kernels on CPU, which
  measure about 2x faster than torch CSR at batch >= 32. N:M weights use fixed-size bags
  (no offsets); this is also the plain-torch fallback of the C++ N:M kernel.
- block_gather: BSR as one batched matmul over the kept blocks: gather each block's slice
  of x's columns, multiply every block by its slice at once (``torch.bmm``), and
  ``index_add_`` the products into their block rows. Three dense ops whose cost is the
  kept blocks alone; the plain-torch fallback of the C++ ``bsr_cpu`` kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._formats import FORMATS, SparseWeight, nm_view, quiet_sparse_beta, sparse_formats
from ._registry import Kernel, Operands, register_kernel

__all__ = ["BlockGatherKernel", "BsrKernel", "CsrKernel", "DenseKernel", "GatherSumKernel"]

# These kernels go through ``to_dense``, so they serve every format registered by now.
_ALL_FORMATS = tuple(FORMATS.names())
_SPARSE_FORMATS = sparse_formats()


@register_kernel("dense")
class DenseKernel(Kernel):
    """``F.linear`` on the decompressed weight."""

    formats = _ALL_FORMATS
    devices = ("cpu", "cuda")

    def prepare(self, weight: SparseWeight, *, device: torch.device,
                dtype: torch.dtype) -> Operands:
        return {"weight": weight.to_dense().to(device=device, dtype=dtype).contiguous()}

    def linear(self, operands: Operands, x: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        return F.linear(x, operands["weight"], bias)


def _csr_tensor(weight: SparseWeight, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    with quiet_sparse_beta():
        if weight.format == "csr":
            t = weight.tensors
            csr = torch.sparse_csr_tensor(t["crow_indices"].long(), t["col_indices"].long(),
                                          t["values"].to(dtype), weight.shape,
                                          check_invariants=True)
        else:
            csr = weight.to_dense().to(dtype).to_sparse_csr()
    return csr.to(device)


def _sparse_mm_t(weight: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None
                 ) -> torch.Tensor:
    if bias is None:
        return (weight @ x.T).T
    return torch.addmm(bias.unsqueeze(1), weight, x.T).T


@register_kernel("csr")
class CsrKernel(Kernel):
    """torch CSR, ``W_csr @ x.T``."""

    formats = _SPARSE_FORMATS
    devices = ("cpu", "cuda")

    def prepare(self, weight: SparseWeight, *, device: torch.device,
                dtype: torch.dtype) -> Operands:
        return {"weight": _csr_tensor(weight, device, dtype)}

    def linear(self, operands: Operands, x: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        return _sparse_mm_t(operands["weight"], x, bias)


@register_kernel("bsr")
class BsrKernel(Kernel):
    """torch BSR, ``W_bsr @ x.T``."""

    formats = ("bsr",)
    devices = ("cpu", "cuda")

    def prepare(self, weight: SparseWeight, *, device: torch.device,
                dtype: torch.dtype) -> Operands:
        t = weight.tensors
        with quiet_sparse_beta():
            bsr = torch.sparse_bsr_tensor(t["crow_indices"].long(), t["col_indices"].long(),
                                          t["values"].to(dtype), weight.shape,
                                          check_invariants=True)
        return {"weight": bsr.to(device)}

    def linear(self, operands: Operands, x: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        return _sparse_mm_t(operands["weight"], x, bias)


@register_kernel("gather_sum")
class GatherSumKernel(Kernel):
    """SpMM through ``F.embedding_bag`` with per-sample weights (plain torch)."""

    formats = _SPARSE_FORMATS
    devices = ("cpu", "cuda")

    def prepare(self, weight: SparseWeight, *, device: torch.device,
                dtype: torch.dtype) -> Operands:
        if weight.format in ("nm", "semi24"):
            values, positions, n, m = nm_view(weight)
            rows, groups, _ = values.shape
            starts = torch.arange(groups, dtype=torch.int32).mul_(m).view(1, groups, 1)
            cols = (starts + positions.to(torch.int32)).reshape(rows, groups * n)
            return {"cols": cols.contiguous().to(device), "offsets": None,
                    "values": values.reshape(rows, groups * n).to(device=device, dtype=dtype)}
        with quiet_sparse_beta():
            csr = weight.to_dense().to_sparse_csr()
        return {"cols": csr.col_indices().to(device=device, dtype=torch.int32),
                "offsets": csr.crow_indices()[:-1].to(device=device, dtype=torch.int32),
                "values": csr.values().to(device=device, dtype=dtype)}

    def linear(self, operands: Operands, x: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        y = F.embedding_bag(operands["cols"], x.T.contiguous(), operands["offsets"],
                            per_sample_weights=operands["values"], mode="sum").T
        return y if bias is None else y + bias


@register_kernel("block_gather")
class BlockGatherKernel(Kernel):
    """BSR as gather + batched block matmul + ``index_add_`` (plain torch)."""

    formats = ("bsr",)
    devices = ("cpu", "cuda")

    def prepare(self, weight: SparseWeight, *, device: torch.device,
                dtype: torch.dtype) -> Operands:
        t = weight.tensors
        bh, bw = weight.params["block"]
        crow = t["crow_indices"].long()
        block_rows = torch.repeat_interleave(torch.arange(crow.numel() - 1),
                                             crow.diff())
        # values^T per block, [blocks, bw, bh], so bmm(x slices, values_t) needs no copy.
        values_t = t["values"].reshape(-1, bh, bw).transpose(1, 2).contiguous()
        return {"values_t": values_t.to(device=device, dtype=dtype),
                "cols": t["col_indices"].long().to(device),
                "rows": block_rows.to(device), "block": (bh, bw),
                "shape": tuple(weight.shape)}

    def linear(self, operands: Operands, x: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        bh, bw = operands["block"]
        out, reduction = operands["shape"]
        batch = x.shape[0]
        # [blocks, batch, bw]: each kept block's slice of the input columns.
        slices = x.reshape(batch, reduction // bw, bw).index_select(1, operands["cols"])
        products = torch.bmm(slices.transpose(0, 1), operands["values_t"])
        y = x.new_zeros(out // bh, batch, bh).index_add_(0, operands["rows"], products)
        y = y.permute(1, 0, 2).reshape(batch, out)
        return y if bias is None else y + bias
