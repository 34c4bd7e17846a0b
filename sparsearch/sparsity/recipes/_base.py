"""The Recipe contract: how a subnet is trained, as a registry of small classes.

A recipe receives a dense model (freshly initialised, or the user's trained checkpoint:
``ctx.pretrained``) and a RecipeContext, trains the model in
place for ``ctx.settings.epochs`` epochs in all, and leaves the final masks applied (with
``sparsearch.sparsity.masking.apply_masks``), so that the model's forward is the subnet.
Searchable knobs are declared in ``knobs`` with their defaults; a space file addresses them
as ``"<recipe>.<knob>"`` (e.g. ``sr_ste.lambda_w``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from sparsearch.catalogue import Catalogue
from sparsearch.sparsity.plan import SparsityPlan
from sparsearch.spec import SubnetSpec
from sparsearch.train import TrainSettings, make_optimizer

__all__ = [
    "Recipe",
    "RecipeContext",
    "create_recipe",
    "list_recipes",
    "mask_flip_rate",
    "recipe_knobs",
    "register_recipe",
]

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class RecipeContext:
    """Everything a recipe needs to train one subnet.

    Attributes:
        model: the dense, seeded model on its device.
        spec: the subnet's spec.
        plan: per-layer patterns and sparsities; ``plan.masks(model, fraction=f)``.
        settings: epochs, lr, optimiser, batch size.
        train_batches: returns one epoch of shuffled training batches.
        log_metric: ``log_metric(key, value, epoch)``, e.g. the mask-flip rate per epoch.
        pretrained: the model holds trained dense weights (``model.checkpoint``): recipes
            skip their dense-training phase and start pruning at once.
        end_epoch: called by the recipe after each of its epochs, with the masks of that
            point applied: the evaluator measures the val split there and reports to the
            scheduler, which may stop the trial (it raises ``TrialStopped``).
    """

    model: nn.Module
    spec: SubnetSpec
    plan: SparsityPlan
    settings: TrainSettings
    train_batches: Callable[[], Iterable[Batch]]
    log_metric: Callable[[str, float, int], None]
    pretrained: bool = False
    end_epoch: Callable[[], None] = field(default=lambda: None)

    def optimizer(self, params: Iterable[nn.Parameter] | None = None) -> torch.optim.Optimizer:
        """A fresh optimiser (from the settings) over ``params`` or all model parameters."""
        return make_optimizer(self.model.parameters() if params is None else params,
                              self.settings)


class Recipe(ABC):
    """Base class of training recipes; subclasses register with ``@register_recipe``."""

    name: ClassVar[str]
    # Searchable knobs and their defaults ("<name>.<knob>" in a space file).
    knobs: ClassVar[dict[str, Any]] = {}

    def __init__(self, **knobs: Any) -> None:
        unknown = set(knobs) - set(self.knobs)
        if unknown:
            raise ValueError(f"recipe {self.name} has no knob {sorted(unknown)[0]!r}; "
                             f"allowed: {sorted(self.knobs)}")
        self.options = {**self.knobs, **knobs}

    def dense_phase(self, ctx: RecipeContext, knob: str) -> float:
        """The knob that sets the share of dense training first; 0 from a trained checkpoint
        (one-shot and gradual pruning in the papers start from a trained dense network)."""
        return 0.0 if ctx.pretrained else float(self.options[knob])

    @abstractmethod
    def run(self, ctx: RecipeContext) -> None:
        """Trains ``ctx.model`` in place and leaves the final masks applied."""


RECIPES: Catalogue[type[Recipe]] = Catalogue("recipe")


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    """Registers a ``Recipe`` subclass under its ``name``."""
    return RECIPES.register(cls.name, cls)


def list_recipes() -> list[str]:
    return RECIPES.names()


def recipe_knobs(name: str) -> dict[str, Any]:
    """The searchable knobs of a recipe with their defaults."""
    return dict(RECIPES.get(name).knobs)


def create_recipe(name: str, **knobs: Any) -> Recipe:
    return RECIPES.get(name)(**knobs)


def mask_flip_rate(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> float:
    """Normalised SAD (SR-STE): flipped mask entries / all entries, over shared layers."""
    flips = total = 0
    for name, mask in new.items():
        prev = old.get(name)
        if prev is None:
            prev = torch.ones_like(mask)
        flips += int((prev ^ mask).sum())
        total += mask.numel()
    return flips / total if total else 0.0
