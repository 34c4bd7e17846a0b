"""Metrics of a subnet: non-zeros, density and FLOPs of the sparse forward pass.

FLOPs are counted with ``torch.utils.flop_counter`` on one sample (so they are per input)
and each prunable layer's share is scaled by its kept fraction: a layer at 10% density
costs 10% of its dense FLOPs, which is what a sparse kernel can at best achieve.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sparsearch.sparsity.masking import count_nnz, prunable_layers

__all__ = ["dense_flops", "sparse_flops", "subnet_metrics"]


@torch.no_grad()
def dense_flops(model: nn.Module, example: torch.Tensor) -> tuple[int, dict[str, int]]:
    """Total FLOPs of one forward pass of ``example`` and the share of each prunable layer."""
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(example)
    counts = counter.get_flop_counts()
    prefix = type(model).__name__
    per_layer = {name: int(sum(counts.get(f"{prefix}.{name}", {}).values()))
                 for name in prunable_layers(model)}
    return int(counter.get_total_flops()), per_layer


@torch.no_grad()
def sparse_flops(model: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of one forward pass with each prunable layer scaled by its density."""
    total, per_layer = dense_flops(model, example)
    for name, layer in prunable_layers(model).items():
        w = layer.weight
        kept = int(torch.count_nonzero(w)) / w.numel()
        total -= round(per_layer[name] * (1.0 - kept))
    return total


def subnet_metrics(model: nn.Module, example: torch.Tensor) -> dict[str, float]:
    """density, nnz, params (prunable weights) and flops (per sample) of a subnet."""
    nnz, total = count_nnz(model)
    return {
        "density": nnz / total if total else 1.0,
        "nnz": float(nnz),
        "params": float(total),
        "flops": float(sparse_flops(model, example[:1])),
    }
