"""Sparsity patterns: which weights of one layer are kept.

Every mask function here is pure: it takes a weight tensor and returns a boolean keep-mask
of the same shape (True = kept), chosen by magnitude. Patterns form a small registry
(``register_pattern`` / ``list_patterns``) behind one dispatcher, ``layer_mask``.

- dense: everything kept.
- unstructured: the smallest |w| of the layer (magnitude pruning).
- N:M (Zhou et al., "Learning N:M Fine-grained Structured Sparse Neural Networks From
  Scratch", ICLR 2021, arXiv 2102.04010): at most N non-zeros in every group of M
  consecutive weights along the reduction (input) dimension. For Conv2d the groups run
  along input channels at each kernel position (SR-STE's NHWC variant, the layout of
  hardware 2:4); Conv1d the same at each of its kernel taps. When the input size is not a multiple of M, the last incomplete group
  (fewer than M weights) stays dense and is counted as kept.
- block(h, w): whole h x w tiles of the 2-D view ``[out, in * kh * kw]`` (the layout a
  BSR kernel stores), ranked by L2 norm. Tiles start at index 0; where the shape is not a
  multiple of the tile, the edge tiles are cut short and are ranked by their L2 norm
  scaled to a full tile (their root-mean-square times sqrt(h * w)), so a cut tile is
  neither favoured nor penalised for being small. This is the ranking of
  ``torch.ao.pruning.WeightNormSparsifier`` (mean of w^2 over each tile).
- channel: whole output rows (Linear) or output channels (Conv1d, Conv2d), ranked by L2 norm.

Counts are exact: ``round(sparsity * units)`` units (weights, tiles or rows) are pruned,
ties broken by position.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Protocol

import torch
from torch.nn import functional as F

from sparsearch.catalogue import Catalogue

__all__ = [
    "block_mask",
    "channel_mask",
    "layer_mask",
    "list_patterns",
    "n_pruned",
    "nm_mask",
    "register_pattern",
    "unstructured_mask",
]


def n_pruned(numel: int, sparsity: float) -> int:
    """Number of weights a layer of ``numel`` weights prunes at ``sparsity`` (rounded)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    return min(numel, int(round(sparsity * numel)))


def _prune_smallest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Flat keep-mask that drops the ``k`` smallest scores (stable: ties by position)."""
    mask = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        order = torch.argsort(scores.flatten(), stable=True)
        mask[order[:k]] = False
    return mask


def unstructured_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keeps all but the ``round(sparsity * numel)`` smallest-magnitude weights.

    Ties are broken by position so that the count is exact.
    """
    k = n_pruned(weight.numel(), sparsity)
    return _prune_smallest(weight.detach().abs(), k).view_as(weight)


def _to_groups_layout(weight: torch.Tensor) -> torch.Tensor:
    """Moves the input dimension last: [O, I] stays, [O, I, k] -> [O, k, I],
    [O, I, kh, kw] -> [O, kh, kw, I]."""
    if weight.dim() in (3, 4):
        return weight.movedim(1, -1)
    if weight.dim() == 2:
        return weight
    raise ValueError(f"N:M masks need a 2-D, 3-D or 4-D weight, got shape "
                     f"{tuple(weight.shape)}")


def _from_groups_layout(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if like.dim() in (3, 4):
        return mask.movedim(-1, 1).contiguous()
    return mask


def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keeps the N largest |w| of every M consecutive weights along the input dimension.

    Args:
        weight: a Linear ``[out, in]``, Conv1d ``[out, in, k]`` or Conv2d
            ``[out, in, kh, kw]`` weight.
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


def _rows_view(weight: torch.Tensor, what: str) -> torch.Tensor:
    if weight.dim() < 2:
        raise ValueError(f"{what} masks need a weight with 2 or more dims, "
                         f"got shape {tuple(weight.shape)}")
    return weight.detach().reshape(weight.shape[0], -1)


def block_mask(weight: torch.Tensor, sparsity: float, *, block: tuple[int, int]) -> torch.Tensor:
    """Prunes whole ``h x w`` tiles of the ``[out, in * kh * kw]`` view by L2 norm.

    Args:
        weight: a weight with 2 or more dims (Linear, Conv1d, Conv2d).
        sparsity: fraction of tiles pruned; exactly ``round(sparsity * tiles)`` tiles go,
            where ``tiles = ceil(out / h) * ceil(cols / w)`` counts the cut edge tiles too.
        block: tile shape ``(h, w)`` in rows x columns of the 2-D view.

    Returns:
        Boolean keep-mask of the weight's shape, constant on every tile. Edge tiles cut
        by the shape are ranked by their root-mean-square (see the module docstring), so
        the weight sparsity can differ slightly from ``sparsity`` when the shape is not a
        multiple of the tile.
    """
    bh, bw = _check_pair(block, "block", minimum=1)
    w2 = _rows_view(weight, "block").float()
    rows, cols = w2.shape
    tiles_h, tiles_w = math.ceil(rows / bh), math.ceil(cols / bw)
    pad = (0, tiles_w * bw - cols, 0, tiles_h * bh - rows)
    energy = F.pad(w2.square(), pad).reshape(tiles_h, bh, tiles_w, bw).sum(dim=(1, 3))
    size = F.pad(torch.ones_like(w2), pad).reshape(tiles_h, bh, tiles_w, bw).sum(dim=(1, 3))
    # Mean of w^2 per tile: the L2 ranking for full tiles, size-fair for edge tiles.
    keep = _prune_smallest(energy / size, n_pruned(tiles_h * tiles_w, sparsity))
    keep = keep.view(tiles_h, tiles_w).repeat_interleave(bh, 0).repeat_interleave(bw, 1)
    return keep[:rows, :cols].reshape(weight.shape).contiguous()


def channel_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Prunes whole output rows/channels: the ``round(sparsity * out)`` smallest by L2 norm."""
    w2 = _rows_view(weight, "channel").float()
    keep = _prune_smallest(w2.square().sum(dim=1), n_pruned(w2.shape[0], sparsity))
    return keep.view(-1, *([1] * (weight.dim() - 1))).expand(weight.shape).contiguous()


def _check_pair(value: object, name: str, *, minimum: int) -> tuple[int, int]:
    """Validates an ``(a, b)`` pair of ints >= ``minimum``."""
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                       for v in value)):
        raise ValueError(f"{name} must be a pair of ints, got {value!r}")
    a, b = int(value[0]), int(value[1])
    if a < minimum or b < minimum:
        raise ValueError(f"{name} must have both values >= {minimum}, got {value!r}")
    return a, b


class PatternFn(Protocol):
    """A registered pattern: ``fn(weight, *, sparsity, nm, block) -> keep-mask``."""

    def __call__(self, weight: torch.Tensor, *, sparsity: float,
                 nm: tuple[int, int] | None, block: tuple[int, int] | None) -> torch.Tensor: ...


PATTERNS: Catalogue[PatternFn] = Catalogue("pattern")


def register_pattern(name: str) -> Callable[[PatternFn], PatternFn]:
    """Registers a pattern ``fn(weight, *, sparsity, nm, block) -> keep-mask`` by name."""
    return PATTERNS.decorator(name)


def list_patterns() -> list[str]:
    """Names accepted by ``layer_mask(pattern=...)``."""
    return PATTERNS.names()


@register_pattern("dense")
def _dense(weight: torch.Tensor, *, sparsity: float, nm: tuple[int, int] | None,
           block: tuple[int, int] | None) -> torch.Tensor:
    return torch.ones_like(weight, dtype=torch.bool)


@register_pattern("unstructured")
def _unstructured(weight: torch.Tensor, *, sparsity: float, nm: tuple[int, int] | None,
                  block: tuple[int, int] | None) -> torch.Tensor:
    return unstructured_mask(weight, sparsity)


@register_pattern("nm")
def _nm(weight: torch.Tensor, *, sparsity: float, nm: tuple[int, int] | None,
        block: tuple[int, int] | None) -> torch.Tensor:
    if nm is None:
        raise ValueError("pattern 'nm' needs nm=(N, M) with 0 < N < M")
    n, m = _check_pair(nm, "nm", minimum=1)
    return nm_mask(weight, n, m)


@register_pattern("block")
def _block(weight: torch.Tensor, *, sparsity: float, nm: tuple[int, int] | None,
           block: tuple[int, int] | None) -> torch.Tensor:
    if block is None:
        raise ValueError("pattern 'block' needs block=(h, w) with h, w >= 1")
    return block_mask(weight, sparsity, block=block)


@register_pattern("channel")
def _channel(weight: torch.Tensor, *, sparsity: float, nm: tuple[int, int] | None,
             block: tuple[int, int] | None) -> torch.Tensor:
    return channel_mask(weight, sparsity)


def layer_mask(
    weight: torch.Tensor,
    *,
    pattern: str,
    sparsity: float = 0.0,
    nm: tuple[int, int] | None = None,
    block: tuple[int, int] | None = None,
) -> torch.Tensor:
    """The keep-mask of one layer for a named pattern.

    Args:
        weight: the layer's weight (Linear ``[out, in]``, Conv1d ``[out, in, k]`` or Conv2d
            ``[out, in, kh, kw]``).
        pattern: one of ``list_patterns()``.
        sparsity: fraction pruned, in [0, 1); not used by ``dense`` and ``nm`` (N:M fixes
            its own sparsity, 1 - N/M).
        nm: ``(N, M)`` for ``pattern="nm"``.
        block: ``(h, w)`` tile shape for ``pattern="block"``.

    Returns:
        Boolean keep-mask of the weight's shape.

    Raises:
        ValueError: for an unknown pattern, a sparsity outside [0, 1), or a missing or bad
            ``nm`` / ``block``.
    """
    fn = PATTERNS.get(pattern)
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    return fn(weight, sparsity=float(sparsity), nm=nm, block=block)
