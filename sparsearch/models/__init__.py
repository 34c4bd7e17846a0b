"""Models: built-in nets for small data, any timm model and a user's own, through one factory."""

from sparsearch.models import _builtin, _custom, _timm  # noqa: F401  (fill the registry)
from sparsearch.models._builtin import MLP, Conv1dNet, SmallCNN
from sparsearch.models._custom import load_checkpoint, resolve_target
from sparsearch.models._registry import MODELS, create_model, list_models, register_model

__all__ = ["MLP", "MODELS", "Conv1dNet", "SmallCNN", "create_model", "list_models",
           "load_checkpoint", "register_model", "resolve_target"]
