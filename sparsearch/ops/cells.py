"""The DARTS cell supernet with DASS's sparse ops, and the network a genotype derives.

DARTS (Liu et al., arXiv 1806.09055, ``cnn/model_search.py``): a stem, then ``cells``
cells (reduction cells at 1/3 and 2/3 of the depth), each with 2 input nodes and 4
intermediate nodes; every edge is a ``MixedOp`` over the 8 primitives, weighted by
softmax(alpha_normal) or softmax(alpha_reduce). DASS (Mousavi et al., arXiv 2207.06968)
builds every convolution (stem, preprocessing, FactorizedReduce, the separable and dilated
convolutions) and the classifier as top-k score layers pruned at one keep fraction k. Here
k itself is a choice too: all sparse layers share one ``MaskChoice`` over the space's
sparsity levels, mixed by softmax(beta), so one search trades accuracy against density.

``CellNetwork`` is the discrete network of a genotype, with plain ``nn.Conv2d`` /
``nn.Linear`` layers (registered as model ``darts_cell``): the derived subnet is trained and
pruned by a recipe like any other model.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from sparsearch.models import register_model
from sparsearch.ops.masks import Candidate
from sparsearch.ops.mixed import MixedOp
from sparsearch.ops.primitives import (
    ConvFactory,
    FactorizedReduce,
    ReLUConvBN,
    create_primitive,
    list_primitives,
    plain_conv,
)
from sparsearch.ops.sparse import MaskChoice, MaskedConv2d, MaskedLinear
from sparsearch.ops.supernet import Supernet, layer_costs

__all__ = ["CellNetwork", "CellSupernet", "Genotype", "cell_layout", "n_edges"]

# A genotype: {"normal": [[op, input], ...], "reduce": [...]}: two entries per node.
Genotype = dict[str, list[list[Any]]]
STEPS = 4
MULTIPLIER = 4
STEM_MULTIPLIER = 3


def n_edges(steps: int = STEPS) -> int:
    """Edges of one cell: node i (0-based) has 2 + i inputs."""
    return sum(2 + i for i in range(steps))


def cell_layout(cells: int) -> list[bool]:
    """Which of ``cells`` cells are reduction cells (DARTS: at 1/3 and 2/3 of the depth)."""
    return [i in (cells // 3, 2 * cells // 3) for i in range(cells)]


class _SearchCell(nn.Module):
    def __init__(self, c_pp: int, c_p: int, c: int, *, reduction: bool, reduction_prev: bool,
                 conv: ConvFactory) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(c_pp, c, conv=conv, affine=False) if reduction_prev
                            else ReLUConvBN(c_pp, c, 1, stride=1, padding=0, conv=conv,
                                            affine=False))
        self.preprocess1 = ReLUConvBN(c_p, c, 1, stride=1, padding=0, conv=conv, affine=False)
        self.edges = nn.ModuleList()
        names = list_primitives()
        for i in range(STEPS):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                ops = []
                for name in names:
                    op = create_primitive(name, c, stride, conv=conv, affine=False)
                    # DARTS adds a BN without affine after pooling in the search network.
                    ops.append(nn.Sequential(op, nn.BatchNorm2d(c, affine=False))
                               if "pool" in name else op)
                self.edges.append(MixedOp(ops, names))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(STEPS):
            node = sum(self.edges[offset + j](h, weights[offset + j])
                       for j, h in enumerate(states))
            offset += len(states)
            states.append(node)
        return torch.cat(states[-MULTIPLIER:], dim=1)


class CellSupernet(Supernet):
    """DARTS's search network with every parametric op sparse (DASS).

    Args:
        in_shape: (C, H, W) of one input.
        num_classes: classes of the classifier.
        init_channels: C of the first cell (DARTS: 16).
        cells: number of cells (DARTS: 8).
        sparsities: the sparsity levels all sparse layers choose among (via beta).

    Attributes:
        alpha_normal, alpha_reduce: ``[14, 8]`` architecture parameters of the edges.
        beta: architecture parameters over ``sparsities``.
        choice: the MaskChoice shared by every sparse layer.
        overrides: fixed weights per decision (DARTS-PT perturbation, discretised edges).
    """

    def __init__(self, *, in_shape: Sequence[int], num_classes: int, init_channels: int,
                 cells: int, sparsities: Sequence[float]) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ValueError(f"the cell supernet needs image data (C, H, W), got {in_shape}")
        self.sparsities = tuple(float(s) for s in sparsities)
        self.choice = MaskChoice([Candidate("unstructured", s) for s in self.sparsities])
        conv = partial(MaskedConv2d, choice=self.choice, bias=False)
        c = init_channels
        c_curr = STEM_MULTIPLIER * c
        self.stem = nn.Sequential(conv(in_shape[0], c_curr, 3, padding=1),
                                  nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, c
        self.cells = nn.ModuleList()
        reduction_prev = False
        for reduction in cell_layout(cells):
            if reduction:
                c_curr *= 2
            self.cells.append(_SearchCell(c_pp, c_p, c_curr, reduction=reduction,
                                          reduction_prev=reduction_prev, conv=conv))
            reduction_prev = reduction
            c_pp, c_p = c_p, MULTIPLIER * c_curr
        self.classifier = MaskedLinear(c_p, num_classes, choice=self.choice)
        self.primitives = tuple(list_primitives())
        shape = (n_edges(), len(self.primitives))
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(shape))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(shape))
        self.beta = nn.Parameter(torch.zeros(len(self.sparsities)))
        self.overrides: dict[str, torch.Tensor] = {}
        self._init_costs(torch.zeros(1, *in_shape))

    def _init_costs(self, example: torch.Tensor) -> None:
        """Dense cost of every (cell, edge, primitive) and of the layers outside the edges."""
        layers = {name: module for name, module in self.named_modules()
                  if isinstance(module, (MaskedConv2d, MaskedLinear))}
        self.choice.enabled = False
        costs = layer_costs(self, example, layers)
        self.choice.enabled = True
        shape = (len(self.cells), n_edges(), len(self.primitives))
        self.edge_cost = {kind: torch.zeros(shape) for kind in ("density", "flops")}
        self.fixed_cost = {"density": 0.0, "flops": 0.0}
        for name, (numel, flops) in costs.items():
            parts = name.split(".")
            if len(parts) > 5 and parts[0] == "cells" and parts[2] == "edges":
                at = (int(parts[1]), int(parts[3]), int(parts[5]))
                self.edge_cost["density"][at] += numel
                self.edge_cost["flops"][at] += flops
            else:
                self.fixed_cost["density"] += numel
                self.fixed_cost["flops"] += flops

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha_normal, self.alpha_reduce, self.beta]

    def decisions(self) -> list[str]:
        edges = [f"{kind}:{e}" for kind in ("normal", "reduce") for e in range(n_edges())]
        return [*edges, "sparsity"]

    def sparsity_decisions(self) -> list[str]:
        return ["sparsity"]  # the edges choose operations, not sparsity levels

    def labels(self, decision: str) -> list[str]:
        if decision == "sparsity":
            return [f"unstructured @{s:.4g}" for s in self.sparsities]
        return list(self.primitives)

    def alpha(self, decision: str) -> torch.Tensor:
        if decision == "sparsity":
            return self.beta
        kind, edge = decision.split(":")
        return (self.alpha_normal if kind == "normal" else self.alpha_reduce)[int(edge)]

    def _mask_choices(self) -> list[Any]:
        return [self.choice]

    def cheapest_cost(self, kind: str) -> float:
        """Every kept edge parameter-free (pooling), every layer at the highest sparsity."""
        reference = self.fixed_cost[kind] + float(self.edge_cost[kind].max(dim=-1).values.sum())
        return self.fixed_cost[kind] * (1.0 - max(self.sparsities)) / reference

    def expected_cost(self, kind: str) -> torch.Tensor:
        """E[weights] or E[FLOPs] of the sparse layers, as a fraction of the largest network.

        Each edge costs ``sum_o p_o c_o`` (p = softmax(alpha)); the layers outside the edges
        cost their dense value; all of it is kept at ``E[1 - s] = sum_l q_l (1 - s_l)``
        (q = softmax(beta)). The reference (cost 1) is every edge at its most expensive op,
        dense.
        """
        if kind not in self.fixed_cost:
            raise ValueError(f"cost must be one of {list(self.fixed_cost)}, got {kind!r}")
        table = self.edge_cost[kind]
        reference = self.fixed_cost[kind] + float(table.max(dim=-1).values.sum())
        cost = torch.tensor(self.fixed_cost[kind])
        normal, reduce = self.edge_weights("normal"), self.edge_weights("reduce")
        for i, cell in enumerate(self.cells):
            weights = reduce if cell.reduction else normal
            cost = cost + (weights * table[i].to(weights.dtype)).sum()
        keep = 1.0 - torch.tensor(self.sparsities)
        return cost * torch.dot(self.level_weights(), keep.to(cost.dtype)) / reference

    def edge_weights(self, kind: str) -> torch.Tensor:
        """softmax(alpha) of ``kind`` (normal | reduce) with the overrides in place."""
        alpha = self.alpha_normal if kind == "normal" else self.alpha_reduce
        weights = torch.softmax(alpha, dim=-1)
        rows = [self.overrides.get(f"{kind}:{e}") for e in range(alpha.shape[0])]
        if any(r is not None for r in rows):
            weights = torch.stack([weights[e] if r is None else r.to(weights.dtype)
                                   for e, r in enumerate(rows)])
        return weights

    def level_weights(self) -> torch.Tensor:
        """softmax(beta) over the sparsity levels, or its override."""
        return self.overrides.get("sparsity", torch.softmax(self.beta, dim=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.choice.probs = self.level_weights()
        normal, reduce = self.edge_weights("normal"), self.edge_weights("reduce")
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, reduce if cell.reduction else normal)
        return self.classifier(s1.mean(dim=(2, 3)))


class _Cell(nn.Module):
    def __init__(self, genotype: list[list[Any]], c_pp: int, c_p: int, c: int, *,
                 reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(c_pp, c, conv=plain_conv) if reduction_prev
                            else ReLUConvBN(c_pp, c, 1, stride=1, padding=0, conv=plain_conv))
        self.preprocess1 = ReLUConvBN(c_p, c, 1, stride=1, padding=0, conv=plain_conv)
        self.inputs = [int(j) for _, j in genotype]
        self.ops = nn.ModuleList(
            create_primitive(str(name), c, 2 if reduction and int(j) < 2 else 1,
                             conv=plain_conv)
            for name, j in genotype)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(len(self.ops) // 2):
            a, b = 2 * i, 2 * i + 1
            states.append(self.ops[a](states[self.inputs[a]])
                          + self.ops[b](states[self.inputs[b]]))
        return torch.cat(states[2:], dim=1)


class CellNetwork(nn.Module):
    """The discrete network of a genotype (DARTS's NetworkCIFAR without auxiliary head).

    Args:
        in_shape: (C, H, W) of one input.
        num_classes: classes of the classifier.
        genotype: ``{"normal": [[op, input], ...], "reduce": [...]}``, two per node.
        init_channels: C of the first cell.
        cells: number of cells.
    """

    def __init__(self, *, in_shape: Sequence[int], num_classes: int, genotype: Genotype,
                 init_channels: int, cells: int) -> None:
        super().__init__()
        c = init_channels
        c_curr = STEM_MULTIPLIER * c
        self.stem = nn.Sequential(plain_conv(in_shape[0], c_curr, 3, padding=1),
                                  nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, c
        self.cells = nn.ModuleList()
        reduction_prev = False
        for reduction in cell_layout(cells):
            if reduction:
                c_curr *= 2
            cell_genotype = genotype["reduce" if reduction else "normal"]
            self.cells.append(_Cell(cell_genotype, c_pp, c_p, c_curr, reduction=reduction,
                                    reduction_prev=reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, (len(cell_genotype) // 2) * c_curr
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(s1.mean(dim=(2, 3)))


@register_model("darts_cell")
def darts_cell(*, in_shape: tuple[int, ...], num_classes: int, genotype: Genotype,
               init_channels: int = 8, cells: int = 3, **_: object) -> nn.Module:
    if len(in_shape) != 3:
        raise ValueError(f"model darts_cell needs image data (C, H, W), got {in_shape}")
    return CellNetwork(in_shape=in_shape, num_classes=num_classes, genotype=genotype,
                       init_channels=init_channels, cells=cells)
