"""Sparsity: patterns (which weights), allocation (how much per layer), masking, recipes."""

from sparsearch.sparsity.masking import (
    WeightMask,
    apply_masks,
    count_nnz,
    current_masks,
    density,
    prunable_layers,
    remove_masks,
)
from sparsearch.sparsity.patterns import n_pruned, nm_mask, unstructured_mask

__all__ = [
    "WeightMask",
    "apply_masks",
    "count_nnz",
    "current_masks",
    "density",
    "n_pruned",
    "nm_mask",
    "prunable_layers",
    "remove_masks",
    "unstructured_mask",
]
