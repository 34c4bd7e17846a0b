"""scores: learned top-k scores with a straight-through gradient (HYDRA, as in DASS).

Sehwag et al., "HYDRA: Pruning Adversarially Robust Neural Networks" (NeurIPS 2020,
arXiv 2002.10509), the pruner that DASS (Mousavi et al., arXiv 2207.06968) uses for its
SparseConv / SparseLinear. Each layer holds a score tensor S of the weight's shape; the
mask M = TopK(|S|) under the layer's pattern (so N:M keeps the top-N scores per group);
the forward is W * M and the backward is straight-through for the top-k, so
dL/dS = (dL/dW~) * W. Three phases as HYDRA's pipeline: dense pre-training
(``pretrain``), score training with the scaled score init
S = sqrt(6 / fan_in) * W / max|W| (so the first mask is the magnitude mask), then a
fine-tune of the surviving weights with the mask fixed (``finetune``). In the score phase
the weights are frozen unless ``train_weights``. The mask-flip rate (SAD) is logged every
epoch; while dense, the mask is the magnitude mask the scores will start from.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from sparsearch.sparsity.masking import apply_masks, current_masks, prunable_layers
from sparsearch.sparsity.patterns import layer_mask
from sparsearch.sparsity.plan import LayerSparsity
from sparsearch.sparsity.recipes._base import Recipe, RecipeContext, mask_flip_rate, register_recipe
from sparsearch.sparsity.recipes._dynamic_mask import split_phases
from sparsearch.train import train_epoch

__all__ = ["ScoreMask"]


class ScoreMask(nn.Module):
    """Parametrization ``W -> W * TopK(|S|)`` with a trainable score tensor ``scores``."""

    def __init__(self, plan: LayerSparsity, weight: torch.Tensor) -> None:
        super().__init__()
        self.plan = plan
        fan_in = weight[0].numel()
        with torch.no_grad():
            # HYDRA's scaled score init: S = sqrt(6 / fan_in) * W / max|W|.
            init = math.sqrt(6.0 / fan_in) * weight / weight.abs().max().clamp_min(1e-12)
        self.scores = nn.Parameter(init.detach().clone())

    def mask(self) -> torch.Tensor:
        """The current top-k keep-mask of |S| under the layer's pattern."""
        return layer_mask(self.scores.detach(), pattern=self.plan.pattern,
                          sparsity=self.plan.sparsity, nm=self.plan.nm, block=self.plan.block)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        magnitude = self.scores.abs()
        # Straight-through top-k: the value is the binary mask, the gradient flows to |S|.
        keep = self.mask().to(weight.dtype) + magnitude - magnitude.detach()
        return weight * keep


@register_recipe
class Scores(Recipe):
    name = "scores"
    # train_weights: also train W while scores learn (HYDRA freezes W);
    # pretrain / finetune: fractions of the epochs trained dense first / with the mask fixed.
    knobs = {"train_weights": False, "pretrain": 0.4, "finetune": 0.3}

    def run(self, ctx: RecipeContext) -> None:
        n_pre, n_score, n_tune = split_phases(
            ctx.settings.epochs, dense=self.dense_phase(ctx, "pretrain"),
            fine_tune=float(self.options["finetune"]), recipe=self.name,
            names=("pretrain", "finetune"))
        before = ctx.plan.masks(ctx.model)
        epoch = 0

        def log_flips(after: dict[str, torch.Tensor]) -> None:
            nonlocal before, epoch
            ctx.log_metric("mask_flip_rate", mask_flip_rate(before, after), epoch)
            before, epoch = after, epoch + 1
            ctx.end_epoch()

        optimizer = ctx.optimizer()
        for _ in range(n_pre):
            train_epoch(ctx.model, ctx.train_batches(), optimizer)
            # The scaled score init makes the first top-k mask this magnitude mask.
            log_flips(ctx.plan.masks(ctx.model))

        layers = prunable_layers(ctx.model)
        handles: dict[str, ScoreMask] = {}
        for name, lp in ctx.plan.layers(ctx.model).items():
            if lp.pattern != "dense":
                handles[name] = ScoreMask(lp, layers[name].weight)
                parametrize.register_parametrization(layers[name], "weight", handles[name])
        scores = [h.scores for h in handles.values()]
        # HYDRA trains only the scores; with no sparse layer there are none to train.
        trains_all = bool(self.options["train_weights"]) or not scores
        optimizer = ctx.optimizer(None if trains_all else scores)
        for _ in range(n_score):
            train_epoch(ctx.model, ctx.train_batches(), optimizer)
            log_flips({name: handle.mask() for name, handle in handles.items()})

        masks = {name: handle.mask() for name, handle in handles.items()}
        for name in handles:
            parametrize.remove_parametrizations(layers[name], "weight", leave_parametrized=False)
        apply_masks(ctx.model, masks)
        optimizer = ctx.optimizer()
        for _ in range(n_tune):
            train_epoch(ctx.model, ctx.train_batches(), optimizer)
            log_flips(current_masks(ctx.model))
