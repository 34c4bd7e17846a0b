"""The whole-space supernet: one shared choice over the points random search samples.

DARTS's relaxation (Liu et al., arXiv 1806.09055) over the space file's own axes, with
DASS's sparse ops (Mousavi et al., arXiv 2207.06968): each *target* is a SubnetSpec of
the space (a pattern, an allocation, a global sparsity or an N:M / block shape, or dense)
and softmax(alpha) over the targets mixes, in every prunable layer, the masks that the
target's ``SparsityPlan`` gives that layer: ``W * sum_j p_j TopK(|S|, s_lj)``, where s_lj
is layer l's sparsity under target j. The layer-wise supernet (``macro``) cannot express
an allocation: ERK at 50% puts a layer at 4% and global magnitude moves every layer with
the weights. Here every (pattern, allocation, sparsity) point is one candidate, so a
derived subnet is a spec random search could have drawn, with the same masks.

Global magnitude is one joint top-k over all layers' scores, recomputed whenever the
scores change: the plan reads ``|S_l| / c_l`` (``c_l`` the layer's scale in HYDRA's
scaled init), which is ``|W_l|`` right after ``reset_scores``, so the first global masks
are exactly random search's.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from sparsearch.ops.masks import Candidate
from sparsearch.ops.sparse import MaskChoice, ScoredWeight, attach_scores
from sparsearch.ops.supernet import Supernet, layer_costs
from sparsearch.sparsity.masking import prunable_layers
from sparsearch.sparsity.plan import LayerSparsity, SparsityPlan
from sparsearch.spec import SubnetSpec

__all__ = ["SpaceSupernet", "target_label"]

DECISION = "target"


def target_label(spec: SubnetSpec) -> str:
    """``unstructured erk @0.74``, ``nm 2:4``, ``block 4x4 global @0.5``, ``dense``."""
    if spec.pattern == "dense":
        return "dense"
    if spec.pattern == "nm":
        return f"nm {spec.nm}"
    shape = f" {spec.block}" if spec.pattern == "block" else ""
    return f"{spec.pattern}{shape} {spec.allocation} @{spec.sparsity:.4g}"


def _candidate(plan: LayerSparsity) -> Candidate:
    if plan.pattern == "dense" or (plan.pattern != "nm" and plan.sparsity == 0.0):
        return Candidate("dense")
    if plan.pattern == "nm":
        return Candidate("nm", nm=plan.nm)
    return Candidate(plan.pattern, sparsity=plan.sparsity, block=plan.block)


class SpaceSupernet(Supernet):
    """A backbone whose layers mix the masks of the space's targets by one softmax(alpha).

    Args:
        backbone: the model (its prunable layers are found by name).
        targets: the specs to choose among (at least one sparse).
        example: one input batch (shapes the FLOPs of each layer).

    Attributes:
        targets: the specs, in candidate order.
        alpha_target: the architecture parameters, one per target.
    """

    def __init__(self, backbone: nn.Module, targets: Sequence[SubnetSpec], *,
                 example: torch.Tensor) -> None:
        super().__init__()
        # The plans of global targets read a score-magnitude copy of the backbone, kept on
        # the CPU (where global allocation sorts anyway) and out of the module tree, so it
        # is neither trained nor saved.
        self._proxy: nn.Module
        object.__setattr__(self, "_proxy", copy.deepcopy(backbone).cpu().requires_grad_(False))
        self.backbone = backbone
        self.targets = tuple(targets)
        self._plans = [SparsityPlan(spec, backbone) for spec in self.targets]
        self._dynamic = [j for j, spec in enumerate(self.targets)
                         if spec.allocation == "global" and spec.pattern != "nm"
                         and spec.target_sparsity > 0]
        layers = prunable_layers(backbone)
        per_target = [plan.layers(backbone) for plan in self._plans]
        # Only global targets move with the scores; the others' layer plans are fixed.
        self._static = {j: p for j, p in enumerate(per_target) if j not in self._dynamic}
        self.layer_names = [name for name in layers
                            if any(p[name].pattern != "dense" for p in per_target)]
        if not self.layer_names:
            raise ValueError("every target leaves every layer dense")
        costs = layer_costs(backbone, example, layers)
        self._layer_cost = {name: {"density": c[0], "flops": c[1]} for name, c in costs.items()}
        self.dense_cost = {"density": sum(c[0] for c in costs.values()),
                           "flops": sum(c[1] for c in costs.values())}
        self.choices = {name: MaskChoice([_candidate(p[name]) for p in per_target])
                        for name in self.layer_names}
        self._sparse: dict[str, ScoredWeight] = {
            name: attach_scores(layers[name], self.choices[name]) for name in self.layer_names}
        self._scale = {name: self._score_scale(name) for name in self.layer_names}
        self.alpha_target = nn.Parameter(torch.zeros(len(self.targets)))
        self.overrides: dict[str, torch.Tensor] = {}
        self._seen: tuple[int, ...] = ()
        self._costs: dict[str, list[float]] = {}
        self._refresh(force=True)

    def _score_scale(self, name: str) -> float:
        layer: Any = self.backbone.get_submodule(name)  # parametrized: W is "original"
        weight: torch.Tensor = layer.parametrizations.weight.original
        scores: torch.Tensor = self._sparse[name].scores
        return float(scores.detach().abs().max() / weight.detach().abs().max().clamp_min(1e-12))

    @torch.no_grad()
    def reset_scores(self) -> None:
        super().reset_scores()
        self._scale = {name: self._score_scale(name) for name in self.layer_names}
        self._refresh(force=True)

    @torch.no_grad()
    def _refresh(self, *, force: bool = False) -> None:
        """Recomputes the global targets' layer sparsities when the scores changed, and
        every target's cost (the kept weights / FLOPs its layer masks imply)."""
        seen = tuple(self._sparse[n].scores._version for n in self.layer_names)
        if seen == self._seen and not force:
            return
        self._seen = seen
        per_target = [self._static.get(j, {}) for j in range(len(self.targets))]
        if self._dynamic:
            proxy = dict(self._proxy.named_modules())
            for name in self.layer_names:
                proxy[name].weight.copy_(self._sparse[name].scores.abs() / self._scale[name])
            for j in self._dynamic:
                per_target[j] = self._plans[j].layers(self._proxy)
                for name in self.layer_names:
                    candidates = list(self.choices[name].candidates)
                    candidates[j] = _candidate(per_target[j][name])
                    self.choices[name].candidates = tuple(candidates)
        for kind in ("density", "flops"):
            self._costs[kind] = [self._plan_cost(p, kind) for p in per_target]

    def _plan_cost(self, layers: dict[str, LayerSparsity], kind: str) -> float:
        """The cost (dense = 1) of per-layer sparsities: the kept weights / FLOPs."""
        return sum(self._layer_cost[n][kind] * (1.0 - p.sparsity)
                   for n, p in layers.items()) / self.dense_cost[kind]

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha_target]

    def decisions(self) -> list[str]:
        return [DECISION]

    def sparsity_decisions(self) -> list[str]:
        return [DECISION]

    def labels(self, decision: str) -> list[str]:
        return [target_label(spec) for spec in self.targets]

    def alpha(self, decision: str) -> torch.Tensor:
        return self.alpha_target

    def _mask_choices(self) -> list[Any]:
        return list(self.choices.values())

    def _weights(self) -> torch.Tensor:
        return self.overrides.get(DECISION, torch.softmax(self.alpha_target, dim=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._refresh()
        weights = self._weights()
        for choice in self.choices.values():
            choice.probs = weights
        return self.backbone(x)

    def target_cost(self, index: int, kind: str) -> float:
        """The cost (dense = 1) of target ``index`` under the current scores."""
        self._refresh()
        return self._costs[kind][index]

    def expected_cost(self, kind: str) -> torch.Tensor:
        """E[cost] = sum_j softmax(alpha)_j cost_j over the targets, dense = 1."""
        if kind not in self.dense_cost:
            raise ValueError(f"cost must be one of {list(self.dense_cost)}, got {kind!r}")
        self._refresh()
        weights = self._weights()
        return torch.dot(weights, torch.tensor(self._costs[kind], dtype=weights.dtype))

    def cheapest_cost(self, kind: str) -> float:
        self._refresh()
        return min(self._costs[kind])

    @torch.no_grad()
    def cost_of(self, spec: SubnetSpec, kind: str) -> float:
        """The cost (dense = 1) of any spec of the space, as ``target_cost`` counts a
        target's (global allocation reads the current scores)."""
        self._refresh()
        return self._plan_cost(SparsityPlan(spec, self._proxy).layers(self._proxy), kind)
