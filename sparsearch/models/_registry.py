"""The model catalogue: built-in nets and timm models by name, one factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from sparsearch.catalogue import Catalogue

MODELS: Catalogue[Callable[..., nn.Module]] = Catalogue("model", field="model.kind")
# Models registered by a module that imports more than a model needs (the DASS ops):
# imported on first use, so a fresh process (``export.load``, an MLflow pyfunc) that never
# touched that module can still rebuild them.
MODELS.register_lazy("darts_cell", "sparsearch.ops.cells:darts_cell")


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Registers a model factory ``f(*, in_shape, num_classes, **options) -> nn.Module``."""
    return MODELS.decorator(name)


def list_models() -> list[str]:
    return MODELS.names()


def create_model(
    kind: str, *, in_shape: tuple[int, ...], num_classes: int, **options: Any
) -> nn.Module:
    """Builds a model from the catalogue.

    Args:
        kind: a registered name (``mlp``, ``cnn``, ``timm``).
        in_shape: shape of one input sample, without the batch dimension.
        num_classes: number of output classes.
        **options: the model's own options (``hidden``, ``name`` for timm, ...).

    Raises:
        ValueError: for an unknown kind.
    """
    model = MODELS.get(kind)(in_shape=tuple(in_shape), num_classes=num_classes, **options)
    # How to build this model again (read by export to rebuild it from a manifest).
    model.sparsearch_build = {
        "kind": kind,
        "in_shape": list(in_shape),
        "num_classes": num_classes,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
    }
    return model
