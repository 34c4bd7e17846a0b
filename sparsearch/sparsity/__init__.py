"""Sparsity: patterns (which weights), allocation (how much per layer), masking, recipes."""

from sparsearch.sparsity.allocation import (
    allocate,
    allocation_options,
    erk_densities,
    list_allocations,
    register_allocation,
)
from sparsearch.sparsity.masking import (
    apply_masks,
    count_nnz,
    density,
    prunable_layers,
    remove_masks,
)
from sparsearch.sparsity.patterns import (
    block_mask,
    channel_mask,
    layer_mask,
    list_patterns,
    nm_mask,
    register_pattern,
    unstructured_mask,
)
from sparsearch.sparsity.recipes import create_recipe, list_recipes, recipe_knobs

# What a user calls (README "Sparsity library"); the mask bookkeeping behind it
# (WeightMask, current_masks, n_pruned) is imported from its module by the code that needs it.
__all__ = [
    "allocate",
    "allocation_options",
    "apply_masks",
    "block_mask",
    "channel_mask",
    "count_nnz",
    "create_recipe",
    "density",
    "erk_densities",
    "layer_mask",
    "list_allocations",
    "list_patterns",
    "list_recipes",
    "nm_mask",
    "prunable_layers",
    "recipe_knobs",
    "register_allocation",
    "register_pattern",
    "remove_masks",
    "unstructured_mask",
]
