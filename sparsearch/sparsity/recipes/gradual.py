"""gradual: magnitude pruning on the cubic schedule of Zhu & Gupta.

"To prune, or not to prune" (Zhu & Gupta 2017, arXiv 1710.01878):
s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (n * dt))^3 with s_i = 0, masks recomputed by
magnitude every dt steps; pruned weights are held at zero and stay pruned (no regrowth). N:M
layers walk through coarser N':M patterns towards the final N:M on the same schedule. From a
trained checkpoint the schedule starts at step 0 (t_0 = 0).
"""

from __future__ import annotations

from sparsearch.sparsity.masking import apply_masks, current_masks, zero_pruned
from sparsearch.sparsity.recipes._base import Recipe, RecipeContext, mask_flip_rate, register_recipe
from sparsearch.train import train_epoch


def cubic_fraction(step: int, *, start: int, end: int) -> float:
    """Fraction of the final sparsity reached at ``step``: 1 - (1 - p)^3, p in [0, 1]."""
    if step < start:
        return 0.0
    if step >= end:
        return 1.0
    p = (step - start) / max(end - start, 1)
    return 1.0 - (1.0 - p) ** 3


@register_recipe
class Gradual(Recipe):
    name = "gradual"
    # start/end: fractions of training where pruning begins and reaches the target;
    # frequency: optimiser steps between mask updates (Zhu & Gupta's dt); 0 = about 100
    # updates over the pruning window (on digits a fixed dt of 10 steps lost 8 points at
    # 95% against one update per step; the window-relative default suits any run length).
    knobs = {"start": 0.1, "end": 0.7, "frequency": 0}

    def run(self, ctx: RecipeContext) -> None:
        epochs = ctx.settings.epochs
        steps_per_epoch = sum(1 for _ in ctx.train_batches())
        total = epochs * steps_per_epoch
        start = int(total * self.dense_phase(ctx, "start"))
        end = max(start + 1, int(total * float(self.options["end"])))
        frequency = int(self.options["frequency"]) or max(1, (end - start) // 100)
        optimizer = ctx.optimizer()
        step = 0
        applied = -1.0

        def update() -> None:
            nonlocal step, applied
            step += 1
            zero_pruned(ctx.model)
            fraction = cubic_fraction(step, start=start, end=end)
            if fraction > 0.0 and fraction != applied and (step % frequency == 0 or step >= end):
                apply_masks(ctx.model, ctx.plan.masks(ctx.model, fraction=fraction))
                applied = fraction

        for epoch in range(epochs):
            before = current_masks(ctx.model)
            train_epoch(ctx.model, ctx.train_batches(), optimizer, after_step=update)
            ctx.log_metric("mask_flip_rate", mask_flip_rate(before, current_masks(ctx.model)),
                           epoch)
            ctx.end_epoch()
        if applied < 1.0:
            apply_masks(ctx.model, ctx.plan.masks(ctx.model))
