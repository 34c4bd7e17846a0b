"""inherited: start from the masks (and weights) a supernet learned, fine-tune with the
masks fixed.

DASS (Mousavi et al., arXiv 2207.06968) and HYDRA (Sehwag et al., arXiv 2002.10509), whose
scores it uses, do not train the found subnet anew: they fine-tune the mask the search
learned. ``path`` is a safetensors file holding ``mask.<layer>`` (keep-masks) and
``state.<key>`` (the supernet's weights, under the model's state-dict keys); ``weights``
false keeps the model's fresh initialisation and inherits the masks only. Without a path
the masks are the plan's magnitude masks of the model as it starts (pruning at
initialisation). Every epoch trains with the masks fixed.
"""

from __future__ import annotations

from sparsearch.sparsity.masking import apply_masks
from sparsearch.sparsity.recipes._base import Recipe, RecipeContext, register_recipe
from sparsearch.train import train_epoch


@register_recipe
class Inherited(Recipe):
    name = "inherited"
    # path: a supernet's masks and weights (DASS writes it); weights: load its weights too.
    knobs = {"path": "", "weights": True}

    def run(self, ctx: RecipeContext) -> None:
        path = str(self.options["path"])
        if path:
            from safetensors.torch import load_file

            state = load_file(path)
            if self.options["weights"]:
                ctx.model.load_state_dict({k[len("state."):]: v for k, v in state.items()
                                           if k.startswith("state.")})
            masks = {k[len("mask."):]: v for k, v in state.items() if k.startswith("mask.")}
        else:
            masks = ctx.plan.masks(ctx.model)
        apply_masks(ctx.model, masks)
        optimizer = ctx.optimizer()
        for _ in range(ctx.settings.epochs):
            train_epoch(ctx.model, ctx.train_batches(), optimizer)
            ctx.end_epoch()
