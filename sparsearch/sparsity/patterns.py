"""Sparsity patterns: which weights of one layer are kept.

Every function here is pure: it takes a weight tensor and returns a boolean keep-mask of
the same shape (True = kept), chosen by magnitude.

- unstructured: the globally smallest |w| of the layer (magnitude pruning).
- N:M (Zhou et al., "Learning N:M Fine-grained Structured Sparse Neural Networks From
  Scratch", ICLR 2021, arXiv 2102.04010): at most N non-zeros in every group of M
  consecutive weights along the reduction (input) dimension. For Conv2d the groups run
  along input channels at each kernel position (SR-STE's NHWC variant, the layout of
  hardware 2:4). When the input size is not a multiple of M, the last incomplete group
  (fewer than M weights) stays dense and is counted as kept.
"""

from __future__ import annotations

import torch

__all__ = ["nm_mask", "unstructured_mask", "n_pruned"]


def n_pruned(numel: int, sparsity: float) -> int:
    """Number of weights a layer of ``numel`` weights prunes at ``sparsity`` (rounded)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    return min(numel, int(round(sparsity * numel)))


def unstructured_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keeps all but the ``round(sparsity * numel)`` smallest-magnitude weights.

    Ties are broken by position so that the count is exact.
    """
    k = n_pruned(weight.numel(), sparsity)
    mask = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
    if k > 0:
        order = torch.argsort(weight.detach().abs().flatten(), stable=True)
        mask[order[:k]] = False
    return mask.view_as(weight)


def _to_groups_layout(weight: torch.Tensor) -> torch.Tensor:
    """Moves the reduction dimension last: [O, I] stays, [O, I, kh, kw] -> [O, kh, kw, I]."""
    if weight.dim() == 4:
        return weight.permute(0, 2, 3, 1)
    if weight.dim() == 2:
        return weight
    raise ValueError(f"N:M masks need a 2-D or 4-D weight, got shape {tuple(weight.shape)}")


def _from_groups_layout(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if like.dim() == 4:
        return mask.permute(0, 3, 1, 2).contiguous()
    return mask


def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keeps the N largest |w| of every M consecutive weights along the input dimension.

    Args:
        weight: a Linear ``[out, in]`` or Conv2d ``[out, in, kh, kw]`` weight.
        n: weights kept per group.
        m: group size; ``0 < n < m``.

    Returns:
        Boolean keep-mask of the weight's shape. The tail group of an input size that is
        not a multiple of M stays dense.
    """
    if not 0 < n < m:
        raise ValueError(f"N:M needs 0 < N < M, got {n}:{m}")
    w = _to_groups_layout(weight.detach().abs())
    lead, reduce_dim = w.shape[:-1], w.shape[-1]
    full = (reduce_dim // m) * m
    mask = torch.ones_like(w, dtype=torch.bool)
    if full:
        groups = w[..., :full].reshape(*lead, full // m, m)
        # SR-STE: zero the (M - N) smallest |w| of each group.
        keep = torch.topk(groups, n, dim=-1).indices
        group_mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
        mask[..., :full] = group_mask.reshape(*lead, full)
    return _from_groups_layout(mask, weight)
