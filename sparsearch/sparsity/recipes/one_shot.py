"""one_shot: train dense, prune once by magnitude, fine-tune with the mask fixed.

The classic train-prune-finetune pipeline (Han et al. 2015; NVIDIA ASP for N:M). From a
trained checkpoint it prunes at step 0 and fine-tunes for all the epochs.
"""

from __future__ import annotations

from sparsearch.sparsity.masking import apply_masks
from sparsearch.sparsity.recipes._base import Recipe, RecipeContext, register_recipe
from sparsearch.train import train_epoch


@register_recipe
class OneShot(Recipe):
    name = "one_shot"
    # prune_at: fraction of the epochs trained dense before the single pruning step.
    knobs = {"prune_at": 0.5}

    def run(self, ctx: RecipeContext) -> None:
        epochs = ctx.settings.epochs
        prune_at = self.dense_phase(ctx, "prune_at")
        dense_epochs = min(epochs - 1, max(0, round(epochs * prune_at)))
        optimizer = ctx.optimizer()
        for _ in range(dense_epochs):
            train_epoch(ctx.model, ctx.train_batches(), optimizer)
            ctx.end_epoch()
        apply_masks(ctx.model, ctx.plan.masks(ctx.model))
        optimizer = ctx.optimizer()
        for _ in range(dense_epochs, epochs):
            train_epoch(ctx.model, ctx.train_batches(), optimizer)
            ctx.end_epoch()
