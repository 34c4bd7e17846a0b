"""Learned top-k score masks with a straight-through gradient (HYDRA, as DASS uses them).

Mousavi et al., "DASS: Differentiable Architecture Search for Sparse Neural Networks"
(arXiv 2207.06968) builds its SparseConv / SparseLinear on HYDRA (Sehwag et al., NeurIPS
2020, arXiv 2002.10509): a layer holds its weight W and a score tensor S of the same
shape; the forward sees ``W * M`` with ``M = TopK(|S|, k)`` (k the keep fraction) and the
backward is straight-through for the top-k, so ``dL/dS = (dL/dW~) * W * sign(S)``.

Here a layer can mix several masks of the same scores, one per ``Candidate`` (a pattern at
a sparsity): ``M = sum_i p_i M_i(|S|)``. Because a Linear or Conv2d is linear in its weight,
``op(x; W * sum_i p_i M_i) = sum_i p_i op(x; W * M_i)``: the DARTS mixed op over candidate
sparse ops of one layer costs a single matmul. Masks are cached until the scores change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sparsearch.sparsity.patterns import layer_mask, n_pruned
from sparsearch.spec import LayerRule

__all__ = ["Candidate", "MaskCache", "mixed_mask", "scaled_score_init"]


@dataclass(frozen=True)
class Candidate:
    """One sparse op of a layer: a pattern at a sparsity (N:M and block carry their shape).

    Attributes:
        pattern: dense | unstructured | nm | block | channel.
        sparsity: fraction pruned (unstructured, block, channel); N:M's is 1 - N/M.
        nm: ``(N, M)`` for ``pattern == "nm"``.
        block: ``(h, w)`` for ``pattern == "block"``.
    """

    pattern: str
    sparsity: float = 0.0
    nm: tuple[int, int] | None = None
    block: tuple[int, int] | None = None

    @property
    def density(self) -> float:
        """Kept fraction of the layer's weights (what the cost term counts)."""
        if self.pattern == "dense":
            return 1.0
        if self.pattern == "nm":
            assert self.nm is not None
            return self.nm[0] / self.nm[1]
        return 1.0 - self.sparsity

    @property
    def label(self) -> str:
        if self.pattern == "nm":
            assert self.nm is not None
            return f"nm {self.nm[0]}:{self.nm[1]}"
        if self.pattern == "block":
            assert self.block is not None
            return f"block {self.block[0]}x{self.block[1]} @{self.sparsity:.4g}"
        if self.pattern == "dense":
            return "dense"
        return f"{self.pattern} @{self.sparsity:.4g}"

    def rule(self, layer_name: str) -> LayerRule:
        """The LayerRule that gives exactly this layer this op."""
        if self.pattern == "dense":
            return LayerRule(glob=layer_name, dense=True)
        if self.pattern == "nm":
            assert self.nm is not None
            return LayerRule(glob=layer_name, pattern="nm", nm=f"{self.nm[0]}:{self.nm[1]}")
        if self.pattern == "block":
            assert self.block is not None
            return LayerRule(glob=layer_name, pattern="block", sparsity=float(self.sparsity),
                             block=f"{self.block[0]}x{self.block[1]}")
        return LayerRule(glob=layer_name, pattern=self.pattern, sparsity=float(self.sparsity))


def scaled_score_init(weight: torch.Tensor) -> torch.Tensor:
    """HYDRA's scaled score init ``S = sqrt(6 / fan_in) * W / max|W|``.

    The first mask of every candidate is then the magnitude mask of the weight.
    """
    fan_in = weight[0].numel()
    w = weight.detach()
    return math.sqrt(6.0 / fan_in) * w / w.abs().max().clamp_min(1e-12)


def _candidate_mask(magnitude: torch.Tensor, candidate: Candidate) -> torch.Tensor:
    if candidate.pattern == "dense" or (candidate.pattern != "nm" and candidate.sparsity == 0):
        return torch.ones_like(magnitude, dtype=torch.bool)
    if candidate.pattern == "unstructured":
        # TopK(|S|, k): keep what lies above the k-th smallest score, k = round(s * numel).
        # kthvalue is O(n) per level where a sort is O(n log n); ties at the threshold
        # (measure zero for real-valued scores) are pruned together.
        pruned = n_pruned(magnitude.numel(), candidate.sparsity)
        if pruned == 0:
            return torch.ones_like(magnitude, dtype=torch.bool)
        if pruned >= magnitude.numel():
            return torch.zeros_like(magnitude, dtype=torch.bool)
        threshold = torch.kthvalue(magnitude.flatten(), pruned).values
        return magnitude > threshold
    return layer_mask(magnitude, pattern=candidate.pattern, sparsity=candidate.sparsity,
                      nm=candidate.nm, block=candidate.block)


class MaskCache:
    """Binary masks of a score tensor's candidates, recomputed only when the scores change."""

    def __init__(self) -> None:
        self._key: tuple[object, ...] | None = None
        self._stacked = torch.empty(0)

    def stacked(self, scores: torch.Tensor, candidates: Sequence[Candidate],
                dtype: torch.dtype) -> torch.Tensor:
        """Keep-masks of ``|scores|`` as 0/1 values of ``dtype``, stacked: ``[C, *shape]``."""
        # A tensor's version counter moves with every in-place update (an optimiser step),
        # so the masks are recomputed exactly when the scores changed.
        key = (id(scores), scores._version, tuple(candidates), dtype, scores.device)
        if key != self._key:
            magnitude = scores.detach().abs()
            self._stacked = torch.stack([_candidate_mask(magnitude, c).to(dtype)
                                         for c in candidates])
            self._key = key
        return self._stacked


def mixed_mask(scores: torch.Tensor, candidates: Sequence[Candidate], probs: torch.Tensor,
               *, cache: MaskCache, straight_through: bool = True) -> torch.Tensor:
    """``sum_i p_i M_i(|S|)``, with the straight-through gradient to S when asked.

    Args:
        scores: the layer's score tensor S (the weight's shape).
        candidates: the candidate sparse ops.
        probs: their mixing weights p (e.g. softmax(alpha)); gradients flow to them.
        cache: where the binary masks are kept between calls.
        straight_through: pass the gradient to S (mask learning); off when S is frozen.
    """
    stacked = cache.stacked(scores, candidates, probs.dtype)
    mixed = torch.tensordot(probs, stacked, dims=1)
    if straight_through:
        magnitude = scores.abs()
        # HYDRA's GetSubnet: forward is the mask, backward passes g to |S| unchanged.
        mixed = mixed + magnitude - magnitude.detach()
    return mixed
