"""What the differentiable search needs from a supernet, whichever space it relaxes.

A supernet (DARTS, Liu et al., arXiv 1806.09055) holds three kinds of parameters, trained
in DASS's three phases (Mousavi et al., arXiv 2207.06968): the weights W, the top-k scores
S of its sparse ops, and the architecture parameters (alpha). Its discrete choices are
*decisions* (a layer's sparse op, a cell edge's primitive, the sparsity level), each a
softmax over candidates that derivation turns into one index: by argmax, or by DARTS-PT's
perturbation (Wang et al., arXiv 2108.04392), which overrides one decision's weights at a
time. ``expected_cost`` is the cost term E[cost] under softmax(alpha), normalised so that
the dense network costs 1.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from sparsearch.ops.sparse import ScoredWeight, sparse_weights

__all__ = ["PHASES", "Supernet", "layer_costs"]

# DASS's phases: dense warm-up (k = 1), mask learning (scores trained), finetune (masks fixed).
PHASES = ("warmup", "search", "finetune")


class Supernet(nn.Module, ABC):
    """Base class of the layer-wise and the cell supernet."""

    overrides: dict[str, torch.Tensor]

    @abstractmethod
    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters (alpha)."""

    @abstractmethod
    def decisions(self) -> list[str]:
        """Names of the discrete choices, in a fixed order."""

    @abstractmethod
    def labels(self, decision: str) -> list[str]:
        """Names of a decision's candidates."""

    @abstractmethod
    def alpha(self, decision: str) -> torch.Tensor:
        """The architecture parameters (logits) of a decision."""

    @abstractmethod
    def expected_cost(self, kind: str) -> torch.Tensor:
        """E[cost] under softmax(alpha), normalised to the dense network (kind: density|flops)."""

    @abstractmethod
    def cheapest_cost(self, kind: str) -> float:
        """The cost (dense = 1) of the sparsest subnet this supernet can derive."""

    @abstractmethod
    def sparsity_decisions(self) -> list[str]:
        """The decisions among sparsity levels (whose candidates differ in cost)."""

    @abstractmethod
    def _mask_choices(self) -> list[Any]:
        """The MaskChoice objects of the sparse layers."""

    def probs(self, decision: str) -> torch.Tensor:
        """softmax(alpha) of a decision (ignoring overrides), detached."""
        return torch.softmax(self.alpha(decision).detach(), dim=0)

    def sparse_layers(self) -> dict[str, ScoredWeight]:
        return sparse_weights(self)

    def score_parameters(self) -> list[nn.Parameter]:
        """The top-k scores S of every sparse layer."""
        return [sw.scores for sw in self.sparse_layers().values()]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Everything trained on the train split besides the scores: W, biases, BN."""
        skip = {id(p) for p in self.arch_parameters()} | {id(p) for p in self.score_parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def set_phase(self, phase: str) -> None:
        """warmup: dense (k = 1); search: masks from learned scores; finetune: masks fixed."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {list(PHASES)}, got {phase!r}")
        for choice in self._mask_choices():
            choice.enabled = phase != "warmup"
            choice.learn_scores = phase == "search"

    @torch.no_grad()
    def reset_scores(self) -> None:
        """HYDRA's scaled score init from the current weights (start of mask learning)."""
        for name, sw in self.sparse_layers().items():
            layer = self.get_submodule(name)
            sw.reset_scores(layer.parametrizations.weight.original)

    def set_override(self, decision: str, weights: torch.Tensor | None) -> None:
        """Fixes a decision's candidate weights (None: back to softmax(alpha))."""
        if weights is None:
            self.overrides.pop(decision, None)
        else:
            self.overrides[decision] = weights.detach().clone()

    def one_hot(self, decision: str, index: int) -> torch.Tensor:
        n = len(self.labels(decision))
        return torch.nn.functional.one_hot(torch.tensor(index), n).float()

    def snapshot(self) -> dict[str, Any]:
        """alpha and softmax(alpha) of every decision, as JSON-ready lists."""
        out: dict[str, Any] = {}
        for d in self.decisions():
            p = self.probs(d)
            out[d] = {"candidates": self.labels(d),
                      "alpha": [round(float(v), 6) for v in self.alpha(d).detach()],
                      "softmax": [round(float(v), 6) for v in p],
                      "argmax": self.labels(d)[int(p.argmax())]}
        return out


@torch.no_grad()
def layer_costs(model: nn.Module, example: torch.Tensor,
                layers: dict[str, nn.Module]) -> dict[str, tuple[float, float]]:
    """(weights, FLOPs per sample) of each named Linear / Conv2d in one forward of ``example``.

    FLOPs count a multiply-add as 2, as ``torch.utils.flop_counter`` does.
    """
    out: dict[str, tuple[float, float]] = {}
    hooks = []

    def record(name: str, module: nn.Module, output: torch.Tensor) -> None:
        numel = float(module.weight.numel())
        # Positions the weight is applied at: H*W for a conv, tokens for a Linear on [B, T, D].
        positions = output[0].numel() / module.weight.shape[0]
        out[name] = (numel, 2.0 * numel * positions)

    for name, module in layers.items():
        hooks.append(module.register_forward_hook(
            lambda m, _inp, o, name=name: record(name, m, o)))
    was_training = model.training
    model.eval()
    try:
        model(example[:1])
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return out
