"""Models: built-in nets for small data, any timm model and a user's own, through one factory."""

from sparsearch.models import _builtin, _custom, _timm  # noqa: F401  (fill the registry)
from sparsearch.models._builtin import MLP, Conv1dNet, SmallCNN
from sparsearch.models._registry import create_model, list_models, register_model

# What a user builds or extends; the catalogue itself and the custom-model loaders are
# imported from their modules by the code that needs them.
__all__ = ["MLP", "Conv1dNet", "SmallCNN", "create_model", "list_models", "register_model"]
