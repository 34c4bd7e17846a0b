"""mdgf: Mask-Decay Gradient Flow, pruned weights fade out instead of vanishing at once.

Bambhaniya et al., "Progressive Gradient Flow for Robust N:M Sparsity Training in
Transformers", arXiv 2402.04744. In the sparse phase the forward sees
W~ = W * (E + (1 - E) * alpha(t)), E recomputed from |W| every step, with
MDGF-Linear alpha(t) = max(0, 1 - k * t) or MDGF-Exponential alpha(t) = exp(-k * t); the
backward is the identity (straight-through), no SR-STE term. A final fine-tune uses strict
binary masks.

Unlike the paper, t runs over the sparse phase as a fraction in [0, 1] rather than in
optimiser steps, so one k fits runs of any length: the paper's per-step k equals this k
divided by the sparse phase's steps. The default k = 10 ends the exponential decay at
alpha ~ 5e-5, close to the paper's ViT-B run (k = 1e-4 over ~110k steps, alpha ~ 2e-5).
"""

from __future__ import annotations

import math

from sparsearch.sparsity.plan import LayerSparsity
from sparsearch.sparsity.recipes._base import register_recipe
from sparsearch.sparsity.recipes._dynamic_mask import DynamicMask
from sparsearch.sparsity.recipes._progressive import ProgressiveRecipe

DECAYS = ("linear", "exponential")


def mask_decay(progress: float, *, decay: str, k: float) -> float:
    """alpha(t): the scale of pruned weights at ``progress`` t in [0, 1] of the sparse phase."""
    if decay == "linear":
        return max(0.0, 1.0 - k * progress)
    return math.exp(-k * progress)


@register_recipe
class MDGF(ProgressiveRecipe):
    name = "mdgf"
    # decay: alpha(t) shape; k: decay rate per sparse phase (see the module docstring);
    # dense / fine_tune: fractions of the epochs trained dense first / with fixed masks last.
    knobs = {"decay": "exponential", "k": 10.0, "dense": 0.0, "fine_tune": 0.2}

    def validate(self) -> None:
        if self.options["decay"] not in DECAYS:
            raise ValueError(f"mdgf.decay must be one of {list(DECAYS)}, "
                             f"got {self.options['decay']!r}")
        if not float(self.options["k"]) >= 0.0:
            raise ValueError(f"mdgf.k must be >= 0, got {self.options['k']!r}")

    def set_progress(self, handles: dict[str, DynamicMask], plans: dict[str, LayerSparsity],
                     progress: float | None) -> None:
        alpha = 1.0 if progress is None else mask_decay(
            progress, decay=str(self.options["decay"]), k=float(self.options["k"]))
        for handle in handles.values():
            handle.alpha = alpha
