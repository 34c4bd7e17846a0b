"""Models: built-in nets for small data and any timm model, through one factory."""

from sparsearch.models import _builtin, _timm  # noqa: F401  (fill the registry)
from sparsearch.models._builtin import MLP, Conv1dNet, SmallCNN
from sparsearch.models._registry import create_model, list_models, register_model

__all__ = ["MLP", "Conv1dNet", "SmallCNN", "create_model", "list_models", "register_model"]
