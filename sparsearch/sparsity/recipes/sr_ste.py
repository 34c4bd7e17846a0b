"""sr_ste: N:M (or any pattern) from scratch with the sparse-refined straight-through estimator.

Zhou et al., "Learning N:M Fine-grained Structured Sparse Neural Networks From Scratch",
ICLR 2021, arXiv 2102.04010. Every forward recomputes the mask E_t from the current dense
weights, W~_t = E_t * W_t; the update is
W_{t+1} = W_t - gamma_t * (g(W~_t) + lambda_W * (1 - E_t) * W_t), which pulls pruned
weights towards zero and lowers the mask-flip rate (SAD). The final masks are computed from
the final dense weights and applied.
"""

from __future__ import annotations

from sparsearch.sparsity.masking import apply_masks
from sparsearch.sparsity.recipes._base import Recipe, RecipeContext, mask_flip_rate, register_recipe
from sparsearch.sparsity.recipes._dynamic_mask import (
    attach_dynamic_masks,
    detach_dynamic_masks,
    live_masks,
    plan_masks,
)
from sparsearch.train import train_epoch


@register_recipe
class SRSTE(Recipe):
    name = "sr_ste"
    # lambda_w: SR-STE's decay on pruned weights (lambda_W; 2e-4 in the paper's code).
    knobs = {"lambda_w": 2e-4}

    def run(self, ctx: RecipeContext) -> None:
        lambda_w = float(self.options["lambda_w"])
        if lambda_w < 0.0:
            raise ValueError(f"sr_ste.lambda_w must be >= 0, got {lambda_w!r}")
        # Per-layer patterns and sparsities, read once from the initial dense weights.
        plans = ctx.plan.layers(ctx.model)
        optimizer = ctx.optimizer()
        before = plan_masks(ctx.model, plans)
        handles = attach_dynamic_masks(ctx.model, plans, decay=lambda_w)
        for epoch in range(ctx.settings.epochs):
            train_epoch(ctx.model, ctx.train_batches(), optimizer)
            after = live_masks(ctx.model)
            ctx.log_metric("mask_flip_rate", mask_flip_rate(before, after), epoch)
            before = after
            ctx.end_epoch()
        detach_dynamic_masks(ctx.model, handles)
        apply_masks(ctx.model, plan_masks(ctx.model, plans))
