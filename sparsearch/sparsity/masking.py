"""Masks on a model: which layers are prunable, applying masks, exact counting.

Masks are applied with ``torch.nn.utils.parametrize``: the trainable tensor stays dense
(``layer.parametrizations.weight.original``) and every forward sees ``original * mask``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = [
    "WeightMask",
    "apply_masks",
    "count_nnz",
    "current_masks",
    "density",
    "prunable_layers",
    "remove_masks",
    "zero_pruned",
]


# Layers whose weight is pruned; any other module of a model stays dense.
PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)


class WeightMask(nn.Module):
    """Parametrization ``w -> w * mask`` (the mask is a buffer, so it moves with the model)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask.to(weight.dtype)


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The Linear, Conv1d and Conv2d layers of ``model`` by module name, in definition order."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE_TYPES)
    }


def _mask_of(layer: nn.Module) -> WeightMask | None:
    if parametrize.is_parametrized(layer, "weight"):
        for p in layer.parametrizations.weight:
            if isinstance(p, WeightMask):
                return p
    return None


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Applies (or replaces) a keep-mask on each named layer's weight.

    Pruned entries of the underlying dense weight are zeroed too, so a mask that is later
    removed or exported leaves exact zeros behind.
    """
    layers = dict(model.named_modules())
    for name, mask in masks.items():
        layer = layers[name]
        if mask.shape != layer.weight.shape:
            raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, "
                             f"weight has {tuple(layer.weight.shape)}")
        mask = mask.to(device=layer.weight.device, dtype=torch.bool)
        existing = _mask_of(layer)
        if existing is not None:
            existing.mask.copy_(mask)
            original = layer.parametrizations.weight.original
        else:
            parametrize.register_parametrization(layer, "weight", WeightMask(mask))
            original = layer.parametrizations.weight.original
        with torch.no_grad():
            original.mul_(mask.to(original.dtype))


@torch.no_grad()
def zero_pruned(model: nn.Module) -> None:
    """Sets the pruned entries of every masked layer's underlying weight back to zero.

    Masked entries get no gradient, but optimiser momentum from before they were pruned
    still moves them; a later magnitude re-ranking would then revive them. Recipes that
    re-rank (gradual) call this after each step so pruned weights stay pruned.
    """
    for layer in prunable_layers(model).values():
        wm = _mask_of(layer)
        if wm is not None:
            layer.parametrizations.weight.original.mul_(wm.mask)


def current_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The masks applied to ``model`` now, by layer name."""
    out = {}
    for name, layer in prunable_layers(model).items():
        wm = _mask_of(layer)
        if wm is not None:
            out[name] = wm.mask.clone()
    return out


def remove_masks(model: nn.Module) -> None:
    """Bakes the masks into the weights (pruned entries become exact zeros)."""
    for layer in prunable_layers(model).values():
        if parametrize.is_parametrized(layer, "weight"):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)


def count_nnz(model: nn.Module) -> tuple[int, int]:
    """(non-zero, total) weights over the prunable layers, as the forward pass sees them."""
    nnz = total = 0
    with torch.no_grad():
        for layer in prunable_layers(model).values():
            w = layer.weight
            nnz += int(torch.count_nonzero(w))
            total += w.numel()
    return nnz, total


def density(model: nn.Module) -> float:
    """Fraction of non-zero weights over the prunable layers."""
    nnz, total = count_nnz(model)
    return nnz / total if total else 1.0
