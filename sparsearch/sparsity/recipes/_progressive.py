"""The dense -> sparse -> fine-tune timeline shared by progressive gradient flow recipes.

Bambhaniya et al., "Progressive Gradient Flow for Robust N:M Sparsity Training in
Transformers", arXiv 2402.04744 (CPAL 2025). Training is split into a dense phase
(fraction ``dense``), a sparse phase with DynamicMasks whose state a subclass sets from the
progress t in [0, 1] through that phase, and a final fine-tune (fraction ``fine_tune``)
with strict binary masks. PGF's code keeps recomputing binary masks in the fine-tune; here
they are fixed (``apply_masks``) so the fine-tune trains exactly the subnet that is
exported. Mask flips (SAD) are logged every epoch.
"""

from __future__ import annotations

from abc import abstractmethod

from sparsearch.sparsity.masking import apply_masks
from sparsearch.sparsity.plan import LayerSparsity
from sparsearch.sparsity.recipes._base import Recipe, RecipeContext, mask_flip_rate
from sparsearch.sparsity.recipes._dynamic_mask import (
    DynamicMask,
    attach_dynamic_masks,
    detach_dynamic_masks,
    live_masks,
    plan_masks,
    split_phases,
)
from sparsearch.train import train_epoch

__all__ = ["ProgressiveRecipe"]


class ProgressiveRecipe(Recipe):
    """A recipe on PGF's timeline; subclasses say what the masks do at each progress."""

    def validate(self) -> None:
        """Checks the subclass's own knobs (raises ValueError)."""

    @abstractmethod
    def set_progress(self, handles: dict[str, DynamicMask], plans: dict[str, LayerSparsity],
                     progress: float | None) -> None:
        """Sets every DynamicMask for ``progress`` in [0, 1] (None: the dense phase)."""

    def run(self, ctx: RecipeContext) -> None:
        self.validate()
        n_dense, n_sparse, n_tune = split_phases(
            ctx.settings.epochs, dense=self.dense_phase(ctx, "dense"),
            fine_tune=float(self.options["fine_tune"]), recipe=self.name)
        steps_per_epoch = sum(1 for _ in ctx.train_batches())
        sparse_start, sparse_steps = n_dense * steps_per_epoch, n_sparse * steps_per_epoch
        # Per-layer patterns and sparsities, read once from the initial dense weights.
        plans = ctx.plan.layers(ctx.model)
        before = plan_masks(ctx.model, plans)
        handles = attach_dynamic_masks(ctx.model, plans)
        step = 0

        def advance() -> None:
            progress = None
            if step >= sparse_start:
                progress = min(1.0, (step - sparse_start) / max(sparse_steps, 1))
            self.set_progress(handles, plans, progress)

        def after_step() -> None:
            nonlocal step
            step += 1
            advance()

        advance()
        optimizer = ctx.optimizer()
        for epoch in range(n_dense + n_sparse):
            train_epoch(ctx.model, ctx.train_batches(), optimizer, after_step=after_step)
            after = live_masks(ctx.model)
            ctx.log_metric("mask_flip_rate", mask_flip_rate(before, after), epoch)
            before = after
            ctx.end_epoch()
        detach_dynamic_masks(ctx.model, handles)
        apply_masks(ctx.model, plan_masks(ctx.model, plans))
        optimizer = ctx.optimizer()
        for epoch in range(n_dense + n_sparse, n_dense + n_sparse + n_tune):
            train_epoch(ctx.model, ctx.train_batches(), optimizer)
            after = live_masks(ctx.model)
            ctx.log_metric("mask_flip_rate", mask_flip_rate(before, after), epoch)
            before = after
            ctx.end_epoch()
