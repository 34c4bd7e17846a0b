"""Training recipes: how a sparse subnet is trained (one registry, one file per recipe)."""

from sparsearch.sparsity.recipes import (  # noqa: F401  (fill the registry)
    gradual,
    inherited,
    mdgf,
    one_shot,
    random_init,
    scores,
    sdgf,
    sr_ste,
)
from sparsearch.sparsity.recipes._base import (
    Recipe,
    RecipeContext,
    create_recipe,
    list_recipes,
    mask_flip_rate,
    recipe_knobs,
    register_recipe,
)

__all__ = [
    "Recipe",
    "RecipeContext",
    "create_recipe",
    "list_recipes",
    "mask_flip_rate",
    "recipe_knobs",
    "register_recipe",
]
