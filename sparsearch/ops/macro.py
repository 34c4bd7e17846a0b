"""The layer-wise ("macro") supernet: every prunable layer of a fixed backbone chooses its
sparse op, a (pattern, sparsity) candidate, by softmax(alpha).

This is DARTS's relaxation (Liu et al., arXiv 1806.09055) over the axis a sparsity search
space declares per layer, with DASS's sparse ops (Mousavi et al., arXiv 2207.06968): each
layer keeps its weight W and gets top-k scores S; candidate i masks the shared W by
``TopK_i(|S|)`` under its own pattern and sparsity, and the layer computes
``op(x; W * sum_i softmax(alpha)_i M_i)``, which equals the mixed op
``sum_i softmax(alpha)_i op_i(x)`` because a Linear / Conv2d is linear in W. The backbone is
any model ``sparsearch.models.create_model`` builds; module names and forwards are kept
(the masks are parametrizations), so a derived choice maps to a LayerRule per layer name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from sparsearch.ops.masks import Candidate
from sparsearch.ops.sparse import MaskChoice, attach_scores
from sparsearch.ops.supernet import Supernet, layer_costs
from sparsearch.sparsity.masking import prunable_layers

__all__ = ["MacroSupernet"]


class MacroSupernet(Supernet):
    """A backbone whose chosen layers mix candidate sparse ops.

    Args:
        backbone: the model (its prunable layers are found by name).
        choices: candidates per layer name; layers not listed stay dense.
        example: one input batch (shapes the FLOPs of each layer).

    Attributes:
        alphas: one parameter vector per chosen layer, in ``choices`` order.
        densities: the real kept fraction of each layer's candidates (N:M tails and cut
            block tiles make it differ slightly from the nominal one).
    """

    def __init__(self, backbone: nn.Module, choices: Mapping[str, Sequence[Candidate]], *,
                 example: torch.Tensor) -> None:
        super().__init__()
        layers = prunable_layers(backbone)
        unknown = [name for name in choices if name not in layers]
        if unknown:
            raise ValueError(f"layer {unknown[0]!r} is not a prunable layer of the backbone; "
                             f"layers are {list(layers)}")
        self.backbone = backbone
        self.layer_names = list(choices)
        costs = layer_costs(backbone, example, layers)
        self.dense_cost = {"density": sum(c[0] for c in costs.values()),
                           "flops": sum(c[1] for c in costs.values())}
        self.layer_cost = {name: {"density": costs[name][0], "flops": costs[name][1]}
                           for name in self.layer_names}
        self.choices = {name: MaskChoice(choices[name]) for name in self.layer_names}
        self.densities: dict[str, list[float]] = {}
        for name in self.layer_names:
            sparse = attach_scores(layers[name], self.choices[name])
            self.densities[name] = [float(m.float().mean()) for m in sparse.binary_masks()]
        self.alphas = nn.ParameterList(
            nn.Parameter(torch.zeros(len(choices[name]))) for name in self.layer_names)
        self.overrides: dict[str, torch.Tensor] = {}

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alphas)

    def decisions(self) -> list[str]:
        return list(self.layer_names)

    def sparsity_decisions(self) -> list[str]:
        return list(self.layer_names)  # every layer's decision is a sparse op

    def labels(self, decision: str) -> list[str]:
        return [c.label for c in self.choices[decision].candidates]

    def candidates(self, decision: str) -> tuple[Candidate, ...]:
        return self.choices[decision].candidates

    def alpha(self, decision: str) -> torch.Tensor:
        return self.alphas[self.layer_names.index(decision)]

    def _mask_choices(self) -> list[Any]:
        return list(self.choices.values())

    def _weights(self) -> dict[str, torch.Tensor]:
        return {name: self.overrides.get(name, torch.softmax(alpha, dim=0))
                for name, alpha in zip(self.layer_names, self.alphas)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, weights in self._weights().items():
            self.choices[name].probs = weights
        return self.backbone(x)

    def expected_cost(self, kind: str) -> torch.Tensor:
        """E[density] or E[FLOPs] over all prunable layers, dense = 1.

        Layers without a choice count as dense; a chosen layer counts
        ``sum_i p_i d_i`` of its dense cost (p = softmax(alpha), d_i the kept fraction).
        """
        if kind not in self.dense_cost:
            raise ValueError(f"cost must be one of {list(self.dense_cost)}, got {kind!r}")
        total = self.dense_cost[kind]
        fixed = total - sum(self.layer_cost[n][kind] for n in self.layer_names)
        cost = torch.tensor(fixed)
        for name, weights in self._weights().items():
            d = torch.tensor(self.densities[name], dtype=weights.dtype)
            cost = cost + self.layer_cost[name][kind] * torch.dot(weights, d)
        return cost / total

    def chosen_density(self, chosen: Mapping[str, int], kind: str = "density") -> float:
        """The cost (dense = 1) of the subnet that takes candidate ``chosen[layer]``."""
        total = self.dense_cost[kind]
        cost = total - sum(self.layer_cost[n][kind] for n in self.layer_names)
        for name in self.layer_names:
            cost += self.layer_cost[name][kind] * self.densities[name][chosen[name]]
        return cost / total

    def cheapest_cost(self, kind: str) -> float:
        sparsest = {n: min(range(len(d)), key=d.__getitem__) for n, d in self.densities.items()}
        return self.chosen_density(sparsest, kind)
