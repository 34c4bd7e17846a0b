"""DynamicMask: a mask recomputed from the dense weights on every forward pass.

The shared machinery of the dynamic recipes (sr_ste, mdgf, sdgf). The trainable tensor
stays dense; every forward recomputes the keep-mask E from the current |W| with the
layer's pattern, and sees ``W * (E + (1 - E) * alpha)``. The backward is straight-through:
the dense gradient reaches every weight, pruned ones included, plus SR-STE's decay on the
pruned weights. With ``alpha = 0`` and ``decay = 0`` this is plain STE (Zhou et al., ICLR
2021, arXiv 2102.04010, §3); ``decay = lambda_w`` is SR-STE; ``alpha(t)`` in (0, 1] is
MDGF's mask decay (Bambhaniya et al., arXiv 2402.04744).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from torch.nn.utils import parametrize

from sparsearch.sparsity.masking import WeightMask, prunable_layers
from sparsearch.sparsity.patterns import layer_mask
from sparsearch.sparsity.plan import LayerSparsity

__all__ = [
    "DynamicMask",
    "attach_dynamic_masks",
    "detach_dynamic_masks",
    "live_masks",
    "plan_masks",
    "split_phases",
    "with_sparsity",
]


class _FlowMask(torch.autograd.Function):
    """Forward ``W * (E + (1 - E) * alpha)``; backward straight-through plus SR-STE decay."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, keep: torch.Tensor, alpha: float,
                decay: float) -> torch.Tensor:
        ctx.save_for_backward(weight, keep)
        ctx.decay = decay
        return weight * (keep + (1.0 - keep) * alpha)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight, keep = ctx.saved_tensors
        if ctx.decay:
            # SR-STE: grad + lambda_w * (1 - mask) * w, so momentum and Adam see the pull.
            grad = grad + ctx.decay * (1.0 - keep) * weight
        return grad, None, None, None


class DynamicMask(nn.Module):
    """Parametrization whose mask follows the dense weight (see the module docstring).

    Attributes:
        plan: the layer's current pattern and sparsity (schedules replace it).
        alpha: the value pruned entries are scaled by in the forward (MDGF's alpha(t)).
        decay: SR-STE's lambda_w on pruned weights in the backward.
        mask: the last computed keep-mask (bool buffer).
    """

    def __init__(self, plan: LayerSparsity, like: torch.Tensor, *, decay: float = 0.0) -> None:
        super().__init__()
        self.plan = plan
        self.alpha = 0.0
        self.decay = float(decay)
        self.register_buffer("mask", torch.ones_like(like, dtype=torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.mask.copy_(layer_mask(weight, pattern=self.plan.pattern,
                                       sparsity=self.plan.sparsity, nm=self.plan.nm,
                                       block=self.plan.block))
        return _FlowMask.apply(weight, self.mask.to(weight.dtype), self.alpha, self.decay)


def attach_dynamic_masks(model: nn.Module, plans: dict[str, LayerSparsity], *,
                         decay: float = 0.0) -> dict[str, DynamicMask]:
    """Puts a DynamicMask on every non-dense planned layer; returns them by layer name."""
    layers = prunable_layers(model)
    handles = {}
    for name, lp in plans.items():
        if lp.pattern == "dense":
            continue
        handle = DynamicMask(lp, layers[name].weight, decay=decay)
        parametrize.register_parametrization(layers[name], "weight", handle)
        handles[name] = handle
    return handles


def detach_dynamic_masks(model: nn.Module, handles: dict[str, DynamicMask]) -> None:
    """Removes the DynamicMasks, leaving the dense weights (same Parameter objects) behind."""
    layers = prunable_layers(model)
    for name in handles:
        parametrize.remove_parametrizations(layers[name], "weight", leave_parametrized=False)


def plan_masks(model: nn.Module, plans: dict[str, LayerSparsity]) -> dict[str, torch.Tensor]:
    """Magnitude masks of the planned layers from their current dense weights."""
    layers = prunable_layers(model)
    return {name: layer_mask(layers[name].weight, pattern=lp.pattern, sparsity=lp.sparsity,
                             nm=lp.nm, block=lp.block)
            for name, lp in plans.items() if lp.pattern != "dense"}


def live_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The keep-masks in use now, fixed (WeightMask) or dynamic, by layer name."""
    out = {}
    for name, layer in prunable_layers(model).items():
        if parametrize.is_parametrized(layer, "weight"):
            for p in layer.parametrizations.weight:
                if isinstance(p, (WeightMask, DynamicMask)):
                    out[name] = p.mask.clone()
    return out


def with_sparsity(plan: LayerSparsity, *, sparsity: float | None = None,
                  nm: tuple[int, int] | None = None) -> LayerSparsity:
    """The same layer plan at another sparsity or N:M (for schedules)."""
    if nm is not None:
        return replace(plan, nm=nm, sparsity=1.0 - nm[0] / nm[1])
    return replace(plan, sparsity=plan.sparsity if sparsity is None else sparsity)


def split_phases(epochs: int, *, dense: float, fine_tune: float, recipe: str,
                 names: tuple[str, str] = ("dense", "fine_tune")) -> tuple[int, int, int]:
    """(dense, sparse, fine-tune) epochs from fractions; the sparse phase gets at least one.

    Raises:
        ValueError: if a fraction is outside [0, 1) or both together reach 1.
    """
    for key, value in zip(names, (dense, fine_tune)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{recipe}.{key} must be a fraction in [0, 1), got {value!r}")
    if dense + fine_tune >= 1.0:
        raise ValueError(f"{recipe}.{names[0]} + {recipe}.{names[1]} must be < 1, "
                         f"got {dense} + {fine_tune}")
    n_dense = round(epochs * dense)
    n_tune = round(epochs * fine_tune)
    # Short runs: shrink the fine-tune, then the dense phase, so sparse training happens.
    n_tune = max(0, min(n_tune, epochs - n_dense - 1))
    n_dense = max(0, min(n_dense, epochs - n_tune - 1))
    return n_dense, epochs - n_dense - n_tune, n_tune
