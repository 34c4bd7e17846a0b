"""A user's own model: any ``nn.Module`` factory named ``pkg.module:factory``, and dense
weights of the user's own (a checkpoint) to start from.

The factory gets the options it is configured with as keyword arguments, plus
``in_shape`` and ``num_classes`` when its signature names them. Its Linear, Conv1d and
Conv2d layers are the prunable ones (``sparsearch.sparsity.prunable_layers``). The target
and options are recorded on the model like any built-in's, so an export rebuilds it in a
fresh process wherever the package is importable.

Checkpoints are read without unrestricted pickle: safetensors, or a state dict through
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsearch.models._registry import register_model

__all__ = ["load_checkpoint", "resolve_target"]


def resolve_target(target: str, *, key: str = "model.target") -> Callable[..., Any]:
    """The callable named by ``pkg.module:attr`` (or ``pkg.module.attr``).

    Args:
        target: the name.
        key: the config field it came from, for error messages.

    Raises:
        ValueError: the text is not such a name, or the module or attribute is missing.
    """
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{key} must be 'package.module:function', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"{key} {target!r}: cannot import {module_name!r} ({err})") \
            from None
    factory: Any = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ValueError(f"{key} {target!r}: {module_name!r} has no {attr!r}")
    if not callable(factory):
        raise ValueError(f"{key} {target!r} is not callable")
    return factory


@register_model("custom")
def custom_model(*, in_shape: tuple[int, ...], num_classes: int, target: str | None = None,
                 options: dict[str, Any] | None = None, **_: object) -> nn.Module:
    if not target:
        raise ValueError("model.target must name the factory for model.kind=custom, "
                         "e.g. model.target=my_pkg.nets:build")
    factory = resolve_target(target)
    kwargs = dict(options or {})
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    for key, value in (("in_shape", tuple(in_shape)), ("num_classes", num_classes)):
        if key in params and key not in kwargs:
            kwargs[key] = value
    try:
        model = factory(**kwargs)
    except TypeError as err:
        raise ValueError(f"model.target {target!r} with options {sorted(kwargs)}: {err}") \
            from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model.target {target!r} returned {type(model).__name__}, "
                         f"not a torch.nn.Module")
    return model


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise ValueError(f"model.checkpoint {str(path)!r} is not a safetensors file "
                             f"({err})") from None
    import pickle

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"model.checkpoint {str(path)!r} is not a weights-only torch state "
                         f"dict ({first})") from None
    # Training scripts often save {"state_dict": ...} or {"model": ...} around the weights.
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ValueError(f"model.checkpoint {str(path)!r} does not hold a state dict of "
                         f"tensors")
    return state


def load_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Loads dense weights into ``model`` in place; every key and shape must match.

    Raises:
        ValueError: a missing or unreadable file, or keys or shapes that differ from the
            model's, named in one line.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"model.checkpoint {str(path)!r} does not exist")
    state = _read_state(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ValueError(f"model.checkpoint {str(path)!r} does not fit the model: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    for key, tensor in own.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ValueError(f"model.checkpoint {str(path)!r}: {key} has shape "
                             f"{tuple(state[key].shape)}, the model's has {tuple(tensor.shape)}")
    model.load_state_dict(state)
