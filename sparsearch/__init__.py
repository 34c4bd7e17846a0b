"""sparsearch: declarative search for sparse neural networks.

The public API, loaded on first use (PEP 562) so that ``import sparsearch`` and
``python -m sparsearch --help`` import no torch, Optuna, MLflow or Ray:

    import sparsearch
    space = sparsearch.load_space("digits_mlp")           # a SearchSpace
    spec = sparsearch.SubnetSpec.from_dict({...})         # one point of it
    result, model = sparsearch.evaluate(spec, ctx)        # a TrialResult and the subnet
    front = sparsearch.pareto_front(points, ["max", "min"])
    sparsearch.run_search(cfg, run_dir)                   # a whole search from a config
"""

from __future__ import annotations

import importlib
import sys
import types
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sparsearch.app import run_search
    from sparsearch.evaluate import TrialResult, evaluate
    from sparsearch.pareto import hypervolume, pareto_front
    from sparsearch.space import SearchSpace, load_space
    from sparsearch.spec import SubnetSpec

try:
    __version__ = version("sparsearch")
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0.0.0+unknown"

# Public name -> the module that defines it.
_API = {
    "run_search": "sparsearch.app",
    "load_space": "sparsearch.space",
    "SearchSpace": "sparsearch.space",
    "SubnetSpec": "sparsearch.spec",
    "evaluate": "sparsearch.evaluate",
    "TrialResult": "sparsearch.evaluate",
    "pareto_front": "sparsearch.pareto",
    "hypervolume": "sparsearch.pareto",
}

__all__ = ["SearchSpace", "SubnetSpec", "TrialResult", "__version__", "evaluate",
           "hypervolume", "load_space", "pareto_front", "run_search"]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'sparsearch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})


class _Package(types.ModuleType):
    """Keeps the public ``sparsearch.evaluate`` the function.

    Importing a submodule sets it as an attribute of its package, and the module
    ``sparsearch.evaluate`` shares its function's name: without this, the first import of
    the module (by anything) would hide the function. ``from sparsearch.evaluate import
    ...`` is unaffected (it reads ``sys.modules``).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
