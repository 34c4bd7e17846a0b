"""random_init: a random mask at initialisation, trained with the mask fixed.

The "random pruning" control: Farahani, "Random Search as a Baseline for Sparse Neural
Network Architecture Search" (arXiv 2403.08265) compares found sparse networks against
random sparse networks at the same sparsity; Liu et al., "The Unreasonable Effectiveness of
Random Pruning" (ICLR 2022, arXiv 2202.02643) do the same per layer. Every layer gets the
plan's pattern and sparsity, but which units survive is random: the mask is the pattern's
own rule applied to i.i.d. uniform scores, so random N:M keeps N random positions per
group, random block keeps whole random tiles, random channel whole random rows.
"""

from __future__ import annotations

import torch

from sparsearch.sparsity.masking import apply_masks, prunable_layers
from sparsearch.sparsity.patterns import layer_mask
from sparsearch.sparsity.recipes._base import Recipe, RecipeContext, register_recipe
from sparsearch.train import train_epoch


@register_recipe
class RandomInit(Recipe):
    name = "random_init"
    knobs: dict[str, object] = {}

    def run(self, ctx: RecipeContext) -> None:
        layers = prunable_layers(ctx.model)
        masks = {}
        # Drawn from torch's global generator, which the trial seeds: same seed, same mask.
        for name, lp in ctx.plan.layers(ctx.model).items():
            if lp.pattern == "dense":
                continue
            weight = layers[name].weight
            scores = torch.rand(weight.shape, device=weight.device)
            masks[name] = layer_mask(scores, pattern=lp.pattern, sparsity=lp.sparsity,
                                     nm=lp.nm, block=lp.block)
        apply_masks(ctx.model, masks)
        optimizer = ctx.optimizer()
        for _ in range(ctx.settings.epochs):
            train_epoch(ctx.model, ctx.train_batches(), optimizer)
            ctx.end_epoch()
