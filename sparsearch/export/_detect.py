"""Format detection: the zeros of a weight decide how it is stored.

In order of preference:

1. N:M for M in 4, 8, 16, 32 along the reduction dimension (for Conv2d: input channels at
   each kernel position, the ``[out, kh, kw, in]`` view, as ``sparsearch.sparsity.nm_mask``
   and hardware 2:4 lay it out). N is the largest non-zero count of any M-group; the
   pattern counts only if the groups are nearly full (nnz >= 90% of N * groups), so a
   sparse unstructured layer is not mistaken for a loose N:M. The smallest N/M wins, then
   the smallest M. 2:4 in a shape CUTLASS accepts is stored as ``semi24``.
2. Blocks: the ``[out, in * kh * kw]`` view tiled by (h, w) (the spec's block shape first,
   then 32, 16, 8, 4 squares) with some tiles empty and the others nearly full.
3. Unstructured: CSR when it is smaller than the dense matrix.
4. Otherwise dense.

A reduction size that M does not divide (``nm_mask`` then leaves a dense tail group) is
not N:M here; such layers fall through to CSR.
"""

from __future__ import annotations

import torch

from sparsearch.kernels import SparseWeight, encode_weight
from sparsearch.kernels._formats import SEMI24_MIN_SHAPE

__all__ = ["detect_format", "gemm_view", "weight_from_gemm_view"]

NM_GROUP_SIZES = (4, 8, 16, 32)
BLOCK_SHAPES = ((32, 32), (16, 16), (8, 8), (4, 4))
# A structured pattern must fill at least this share of the slots it claims.
_FULLNESS = 0.9


def gemm_view(weight: torch.Tensor, layout: str) -> torch.Tensor:
    """The 2-D ``[out, reduction]`` matrix of a Linear or Conv2d weight.

    Args:
        weight: ``[out, in]`` or ``[out, in, kh, kw]``.
        layout: ``"oi"`` (reduction ordered in, kh, kw: torch's own flattening and the
            order of ``F.unfold``) or ``"ohwi"`` (ordered kh, kw, in: N:M groups contiguous).
    """
    if weight.dim() == 2:
        return weight
    if layout == "ohwi":
        return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)
    return weight.reshape(weight.shape[0], -1)


def weight_from_gemm_view(matrix: torch.Tensor, shape: tuple[int, ...], layout: str
                          ) -> torch.Tensor:
    """Inverse of ``gemm_view``: back to the module's weight ``shape``."""
    if len(shape) == 2:
        return matrix.reshape(shape)
    out, cin, kh, kw = shape
    if layout == "ohwi":
        return matrix.reshape(out, kh, kw, cin).permute(0, 3, 1, 2).contiguous()
    return matrix.reshape(shape)


def _nm_pattern(nonzero: torch.Tensor) -> tuple[int, int] | None:
    rows, cols = nonzero.shape
    nnz = int(nonzero.sum())
    best: tuple[float, int, int] | None = None
    for m in NM_GROUP_SIZES:
        if cols % m or nnz == 0:
            continue
        counts = nonzero.reshape(rows, cols // m, m).sum(-1)
        n = int(counts.max())
        if n >= m or nnz < _FULLNESS * n * counts.numel():
            continue
        if best is None or n / m < best[0]:
            best = (n / m, n, m)
    return None if best is None else (best[1], best[2])


def _block_shape(matrix: torch.Tensor, hint: tuple[int, int] | None) -> tuple[int, int] | None:
    rows, cols = matrix.shape
    nnz = int(torch.count_nonzero(matrix))
    shapes = ([hint] if hint else []) + [s for s in BLOCK_SHAPES if s != hint]
    for bh, bw in shapes:
        if bh * bw < 16 or rows % bh or cols % bw:
            continue
        tiles = (matrix.reshape(rows // bh, bh, cols // bw, bw) != 0).any(dim=(1, 3))
        kept = int(tiles.sum())
        if 0 < kept < tiles.numel() and nnz >= _FULLNESS * kept * bh * bw:
            return bh, bw
    return None


def detect_format(weight: torch.Tensor, *, block_hint: tuple[int, int] | None = None
                  ) -> tuple[str, SparseWeight]:
    """Chooses the storage format of one Linear/Conv2d weight from its zeros.

    Args:
        weight: the effective (masked) weight, ``[out, in]`` or ``[out, in, kh, kw]``.
        block_hint: a block shape to try first (from the SubnetSpec).

    Returns:
        ``(layout, weight)``: the GEMM layout (see ``gemm_view``) and the encoded weight.
    """
    weight = weight.detach().to("cpu", torch.float32)
    if bool(weight.all()):
        return "oi", encode_weight(gemm_view(weight, "oi").contiguous(), "dense")
    channels_last = gemm_view(weight, "ohwi").contiguous()
    nm = _nm_pattern(channels_last != 0)
    layout = "ohwi" if weight.dim() == 4 and weight.shape[2:] != (1, 1) else "oi"
    if nm is not None:
        n, m = nm
        rows, cols = channels_last.shape
        if (n, m) == (2, 4) and rows % SEMI24_MIN_SHAPE[0] == 0 and cols % SEMI24_MIN_SHAPE[1] == 0:
            return layout, encode_weight(channels_last, "semi24")
        return layout, encode_weight(channels_last, "nm", n=n, m=m)
    matrix = gemm_view(weight, "oi").contiguous()
    block = _block_shape(matrix, block_hint)
    if block is not None:
        return "oi", encode_weight(matrix, "bsr", block=block)
    csr = encode_weight(matrix, "csr")
    if csr.nbytes < matrix.numel() * matrix.element_size():
        return "oi", csr
    return "oi", encode_weight(matrix, "dense")
