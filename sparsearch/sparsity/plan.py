"""SparsityPlan: turns a SubnetSpec into per-layer masks for a given model.

The plan resolves, for every prunable layer, its pattern (the spec's, or its layer rule's)
and its sparsity: layers with a ``dense`` rule are never pruned, layers with their own
``sparsity`` keep it, and the spec's global target is spread over the remaining ("free")
layers by the spec's allocation. With ``allocation: layerwise`` the rule values are the
allocation and the free layers get the global target. N:M layers take their sparsity from
N and M.

Recipes ask the plan for masks at a *fraction* of the final sparsity (0 = dense,
1 = final), which is how gradual and progressive schedules ramp up.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sparsearch.sparsity.masking import prunable_layers
from sparsearch.spec import SubnetSpec, parse_block, parse_nm

__all__ = ["LayerSparsity", "SparsityPlan"]


@dataclass(frozen=True)
class LayerSparsity:
    """What one layer will become: pattern, final sparsity, N:M or block shape."""

    name: str
    pattern: str
    sparsity: float
    nm: tuple[int, int] | None = None
    block: tuple[int, int] | None = None


class SparsityPlan:
    """Per-layer patterns and sparsities of one spec on one model."""

    def __init__(self, spec: SubnetSpec, model: nn.Module) -> None:
        self.spec = spec
        self.layer_names = list(prunable_layers(model))
        self._free: list[str] = []
        self._fixed: dict[str, float] = {}
        self._patterns: dict[str, tuple[str, tuple[int, int] | None, tuple[int, int] | None]] = {}
        for name in self.layer_names:
            rule = spec.rule_for(name)
            if spec.pattern == "dense" or (rule is not None and rule.dense):
                self._patterns[name] = ("dense", None, None)
                continue
            pattern = (rule.pattern if rule and rule.pattern else spec.pattern)
            nm_text = rule.nm if rule and rule.nm else spec.nm
            block_text = rule.block if rule and rule.block else spec.block
            nm = parse_nm(nm_text) if pattern == "nm" else None
            block = parse_block(block_text) if pattern == "block" else None
            self._patterns[name] = (pattern, nm, block)
            if pattern == "nm":
                continue
            if rule is not None and rule.sparsity is not None and spec.allocation != "layerwise":
                self._fixed[name] = float(rule.sparsity)
            else:
                self._free.append(name)

    def _allocation_options(self) -> dict[str, object]:
        prefix = f"{self.spec.allocation}."
        options = {k[len(prefix):]: v for k, v in self.spec.options.items() if k.startswith(prefix)}
        if self.spec.allocation == "layerwise":
            sparsities = {}
            for name in self._free:
                rule = self.spec.rule_for(name)
                if rule is not None and rule.sparsity is not None:
                    sparsities[name] = float(rule.sparsity)
            options["sparsities"] = sparsities
        return options

    def layers(self, model: nn.Module) -> dict[str, LayerSparsity]:
        """Final per-layer plan; global allocation reads the model's current weights."""
        from sparsearch.sparsity.allocation import allocate

        allocated: dict[str, float] = {}
        # layerwise takes its values from the rules even with no global target.
        if self._free and (self.spec.target_sparsity > 0.0
                           or self.spec.allocation == "layerwise"):
            allocated = allocate(model, self.spec.target_sparsity, self.spec.allocation,
                                 layers=self._free, **self._allocation_options())
        plans = {}
        for name in self.layer_names:
            pattern, nm, block = self._patterns[name]
            if pattern == "dense":
                sparsity = 0.0
            elif pattern == "nm":
                assert nm is not None
                sparsity = 1.0 - nm[0] / nm[1]
            else:
                sparsity = self._fixed.get(name, allocated.get(name, 0.0))
            plans[name] = LayerSparsity(name, pattern, sparsity, nm, block)
        return plans

    def masks(self, model: nn.Module, *, fraction: float = 1.0) -> dict[str, torch.Tensor]:
        """Keep-masks for every non-dense layer at ``fraction`` of its final sparsity.

        For N:M layers a fraction keeps ``M - round((M - N) * fraction)`` of every M, so a
        schedule walks from dense through coarser N':M to the final N:M.
        """
        from sparsearch.sparsity.patterns import layer_mask

        fraction = min(max(float(fraction), 0.0), 1.0)
        layers = dict(model.named_modules())
        out = {}
        for name, lp in self.layers(model).items():
            if lp.pattern == "dense":
                continue
            weight = layers[name].weight
            if lp.pattern == "nm":
                assert lp.nm is not None
                n, m = lp.nm
                kept = m - round((m - n) * fraction)
                out[name] = (torch.ones_like(weight, dtype=torch.bool) if kept >= m
                             else layer_mask(weight, pattern="nm", nm=(kept, m)))
            else:
                out[name] = layer_mask(weight, pattern=lp.pattern,
                                       sparsity=lp.sparsity * fraction, block=lp.block)
        return out
