"""DARTS's continuous relaxation: a mixed op is a softmax(alpha)-weighted sum of candidates.

Liu, Simonyan and Yang, "DARTS: Differentiable Architecture Search" (ICLR 2019, arXiv
1806.09055), eq. (1): ``o_bar(x) = sum_o softmax(alpha)_o * o(x)``. The weights are passed
in by the supernet that owns alpha, so the same op serves the relaxed search, a
discretised edge (one-hot weights) and DARTS-PT's perturbation (Wang et al., arXiv
2108.04392), which sets one op's weight to 0 and keeps the others.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MixedOp"]


class MixedOp(nn.Module):
    """``sum_o w_o * o(x)`` over candidate ops.

    Args:
        ops: the candidate ops (same output shape for the same input).
        names: a name per op (e.g. the primitive's), for derivation and logs.
    """

    def __init__(self, ops: Sequence[nn.Module], names: Sequence[str]) -> None:
        super().__init__()
        if len(ops) != len(names) or not ops:
            raise ValueError(f"MixedOp needs one name per op, got {len(ops)} ops and "
                             f"{len(names)} names")
        self.ops = nn.ModuleList(ops)
        self.names = tuple(names)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # DARTS eq. (1); ops whose weight is a constant 0 (masked out, or a discretised
        # edge) are skipped, which is exact and saves their compute.
        skip = not weights.requires_grad
        out = None
        for w, op, zero in zip(weights, self.ops, (weights == 0).tolist()):
            if skip and zero:
                continue
            term = w * op(x)
            out = term if out is None else out + term
        if out is None:
            return self.ops[0](x) * 0.0
        return out
