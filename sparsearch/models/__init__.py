"""Models: built-in nets for small data and any timm model, through one factory."""

from sparsearch.models import _builtin, _timm  # noqa: F401  (fill the registry)
from sparsearch.models._builtin import MLP, SmallCNN
from sparsearch.models._registry import MODELS, create_model, list_models, register_model

__all__ = ["MLP", "MODELS", "SmallCNN", "create_model", "list_models", "register_model"]
