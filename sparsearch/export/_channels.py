"""Channel sparsity exported as structure: pruned channels become smaller dense layers.

A layer whose mask zeroed whole output rows (the ``channel`` pattern) still computes
those outputs: its bias, through the activations that follow, is a constant. The fastest
form of such a layer is a physically smaller one (the dependency-graph pruning of
DepGraph / torch-pruning, Fang et al., CVPR 2023, arXiv 2301.12900): the dead output rows
are removed, with the matching entries of a BatchNorm in between and the next layer's
matching input columns, and the constant each dead channel carried is folded into the
next layer's bias (exact for a Linear, and for a Conv2d without zero padding; a
zero-padded conv sees the constant only inside the image, so there the channel is removed
only when its constant is zero).

The graph comes from ``torch.fx``: a producer's output must reach exactly one consumer
(Linear->Linear, Conv2d->Conv2d, Conv2d->BatchNorm->Conv2d) through per-channel
elementwise ops only. A residual add, a concatenation, a flatten, a second user or an
untraceable model keep the full shape, and the report says why per layer. The smaller
model is checked against the original on the example input before it is used.
"""

from __future__ import annotations

import copy
import operator
from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from sparsearch.export._layers import layer_geometry

__all__ = ["prune_channels", "resize_layers"]

_ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU,
                        nn.ELU, nn.Hardswish, nn.Hardtanh, nn.Mish, nn.Identity, nn.Dropout)
_ELEMENTWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.gelu, F.silu, torch.tanh,
                          torch.sigmoid, F.leaky_relu, F.elu, F.hardswish, F.mish, F.dropout}
_ELEMENTWISE_METHODS = {"relu", "sigmoid", "tanh"}
# Pooling keeps a channel's zeros zero, but not a non-zero constant at padded borders.
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_MERGES = {operator.add, torch.add, torch.cat, torch.concat, operator.mul, torch.mul}
# Relative error at the output's scale above which the smaller model is refused: summing
# fewer terms rounds differently, by far more in half precision.
_CHECK_TOLERANCE = {torch.float16: 1e-2, torch.bfloat16: 1e-2}
_DEFAULT_TOLERANCE = 1e-4


def _follow(node: fx.Node, modules: dict[str, nn.Module]
            ) -> tuple[list[tuple[str, Any, fx.Node]], fx.Node | None, str]:
    """The per-channel ops from ``node`` to its single consumer layer, or why there is none."""
    path: list[tuple[str, Any, fx.Node]] = []
    current = node
    while True:
        users = list(current.users)
        if len(users) != 1:
            return path, None, (f"output used by {len(users)} nodes (a residual or a branch)"
                                if users else "output unused")
        user = users[0]
        if user.op == "output":
            return path, None, "is the model's output"
        if user.op == "call_module":
            module = modules[str(user.target)]
            if layer_geometry(module) is not None:
                if user.args[:1] != (current,):
                    return path, None, f"feeds {user.target} other than as its input"
                return path, user, ""
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                path.append(("bn", module, user))
            elif isinstance(module, _ELEMENTWISE_MODULES):
                path.append(("module", module, user))
            elif isinstance(module, _POOLS):
                path.append(("pool", module, user))
            else:
                return path, None, f"output goes through {type(module).__name__}"
        elif user.op == "call_function" and user.target in _ELEMENTWISE_FUNCTIONS:
            path.append(("function", user, user))
        elif user.op == "call_method" and user.target in _ELEMENTWISE_METHODS:
            path.append(("method", user, user))
        elif user.op == "call_function" and user.target in _MERGES:
            return path, None, "output feeds a residual add, product or concatenation"
        else:
            name = getattr(user.target, "__name__", user.target)
            return path, None, f"output goes through {name}"
        current = user


def _dead_constant(producer: Any, dead: torch.Tensor,
                   path: list[tuple[str, Any, fx.Node]]) -> torch.Tensor | None:
    """What each dead channel carries into the consumer; None if pooling bends it."""
    with torch.no_grad():
        value = (producer.bias[dead].clone() if producer.bias is not None
                 else producer.weight.new_zeros(int(dead.sum())))
        for kind, op, _ in path:
            if kind == "bn":
                mean = op.running_mean[dead] if op.running_mean is not None else 0.0
                var = op.running_var[dead] if op.running_var is not None else 1.0
                value = (value - mean) / torch.sqrt(var + op.eps)
                if op.affine:
                    value = value * op.weight[dead] + op.bias[dead]
            elif kind == "module":
                value = op(value.clone())
            elif kind == "function":
                value = op.target(value.clone(), *op.args[1:], **op.kwargs)
            elif kind == "method":
                value = getattr(value.clone(), op.target)()
            elif kind == "pool" and bool(value.any()):
                return None
    return value


def _keep_rows(module: Any, keep: torch.Tensor) -> None:
    with torch.no_grad():
        module.weight = nn.Parameter(module.weight[keep].clone(), requires_grad=False)
        if module.bias is not None:
            module.bias = nn.Parameter(module.bias[keep].clone(), requires_grad=False)
    if isinstance(module, nn.Linear):
        module.out_features = int(keep.numel())
    else:
        module.out_channels = int(keep.numel())


def _keep_bn(bn: Any, keep: torch.Tensor) -> None:
    with torch.no_grad():
        if bn.affine:
            bn.weight = nn.Parameter(bn.weight[keep].clone(), requires_grad=False)
            bn.bias = nn.Parameter(bn.bias[keep].clone(), requires_grad=False)
        if bn.running_mean is not None:
            bn.running_mean = bn.running_mean[keep].clone()
            bn.running_var = bn.running_var[keep].clone()
    bn.num_features = int(keep.numel())


def _keep_columns(consumer: Any, keep: torch.Tensor, dead: torch.Tensor,
                  constant: torch.Tensor) -> None:
    with torch.no_grad():
        weight = consumer.weight
        if bool(constant.any()):
            # The dead channels' constant, times their columns, is a per-output offset.
            offset = torch.einsum("oi...,i->o", weight[:, dead], constant.to(weight.dtype))
            bias = consumer.bias if consumer.bias is not None else weight.new_zeros(
                weight.shape[0])
            consumer.bias = nn.Parameter(bias + offset, requires_grad=False)
        consumer.weight = nn.Parameter(weight[:, keep].clone(), requires_grad=False)
    if isinstance(consumer, nn.Linear):
        consumer.in_features = int(keep.numel())
    else:
        consumer.in_channels = int(keep.numel())


def _shape_of(module: nn.Module) -> dict[str, Any]:
    if isinstance(module, nn.Linear):
        return {"in_features": module.in_features, "out_features": module.out_features,
                "bias": module.bias is not None}
    if isinstance(module, nn.Conv2d):
        return {"in_channels": module.in_channels, "out_channels": module.out_channels,
                "bias": module.bias is not None}
    return {"num_features": module.num_features}


def _prune_one(node: fx.Node, modules: dict[str, nn.Module],
               calls: Counter[str]) -> tuple[str, list[str]]:
    """Removes a layer's dead output channels.

    Returns:
        ``("", changed module names)`` when done; ``(why not, [])`` when it kept them
        (``why`` is empty too when it had none).
    """
    producer: Any = modules[str(node.target)]
    rows = producer.weight.detach().reshape(producer.weight.shape[0], -1)
    dead = (rows == 0).all(dim=1)
    if not bool(dead.any()):
        return "", []
    if bool(dead.all()):
        return "every output channel is zero", []
    path, consumer_node, reason = _follow(node, modules)
    if consumer_node is None:
        return reason, []
    consumer: Any = modules[str(consumer_node.target)]
    # Stateless activations may be shared; a consumer or BatchNorm that shrinks may not.
    shared = [str(n.target) for n in (consumer_node, *(n for kind, _, n in path if kind == "bn"))
              if calls[str(n.target)] > 1]
    if shared:
        return f"feeds {shared[0]}, which is called at several places", []
    if type(consumer) is not type(producer):
        return f"feeds a {type(consumer).__name__} (a flatten or reshape between)", []
    constant = _dead_constant(producer, dead, path)
    if constant is None:
        return "a pooled channel carries a non-zero constant", []
    padded = isinstance(consumer, nn.Conv2d) and any(p != 0 for p in consumer.padding)
    if padded and bool(constant.any()):
        return "its channels carry a non-zero constant into a zero-padded conv", []
    keep = (~dead).nonzero().flatten()
    _keep_columns(consumer, keep, dead, constant)
    _keep_rows(producer, keep)
    names = {id(m): n for n, m in modules.items()}
    bns = [op for kind, op, _ in path if kind == "bn"]
    for bn in bns:
        _keep_bn(bn, keep)
    return "", [str(node.target), str(consumer_node.target), *(names[id(bn)] for bn in bns)]


def prune_channels(model: nn.Module, example_input: torch.Tensor | None
                   ) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of ``model`` with its all-zero output channels removed where that is exact.

    Args:
        model: a model without masks (pruned weights are zeros), in eval mode.
        example_input: a model input; the smaller copy must reproduce the model's output
            on it (to ``1e-4`` of its scale, ``1e-2`` in half precision) or the model is
            returned unchanged.

    Returns:
        ``(model or its smaller copy, report)``: the report lists ``pruned`` layers (their
        channels before and after), ``kept_full`` layers with why, and ``shapes``, the new
        sizes of every changed module (what ``resize_layers`` needs to rebuild it).
    """
    report: dict[str, Any] = {"pruned": {}, "kept_full": {}, "shapes": {}}
    smaller = copy.deepcopy(model).eval()
    try:
        graph = fx.symbolic_trace(smaller).graph
    except Exception as err:  # noqa: BLE001 (any tracing failure means: keep the shape)
        report["skipped"] = f"the graph cannot be traced ({type(err).__name__}): full shapes"
        return model, report
    modules = dict(smaller.named_modules())
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    changed: set[str] = set()
    for node in graph.nodes:
        if node.op != "call_module" or layer_geometry(modules[node.target]) is None:
            continue
        before = modules[node.target].weight.shape[0]
        if calls[node.target] > 1:
            # A module called at several places (shared weights) cannot shrink for one.
            report["kept_full"][node.target] = f"called at {calls[node.target]} places"
            continue
        reason, names = _prune_one(node, modules, calls)
        if names:
            report["pruned"][node.target] = {
                "channels": [before, modules[node.target].weight.shape[0]],
                "consumer": names[1]}
            changed.update(names)
        elif reason:
            report["kept_full"][node.target] = reason
    if not changed:
        return model, report
    if example_input is not None and not _same_outputs(model, smaller, example_input):
        return model, {"pruned": {}, "kept_full": {}, "shapes": {},
                       "skipped": "the smaller model's outputs differ: full shapes"}
    report["shapes"] = {name: _shape_of(modules[name]) for name in sorted(changed)}
    return smaller, report


def _same_outputs(model: nn.Module, smaller: nn.Module, example: torch.Tensor) -> bool:
    try:
        with torch.no_grad():
            ref, out = model(example), smaller(example)
    except RuntimeError:  # a shape the graph walk got wrong: refuse, never fail the export
        return False
    if not isinstance(ref, torch.Tensor) or ref.shape != out.shape:
        return False
    scale = max(float(ref.abs().max()), 1e-30)
    tolerance = _CHECK_TOLERANCE.get(ref.dtype, _DEFAULT_TOLERANCE)
    return float((ref - out).float().abs().max()) <= tolerance * scale


def resize_layers(model: nn.Module, shapes: dict[str, dict[str, Any]]) -> None:
    """Replaces the named modules by empty ones of the recorded sizes (before loading state)."""
    for name, sizes in shapes.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old: Any = getattr(parent, child)
        if isinstance(old, nn.Linear):
            new: nn.Module = nn.Linear(sizes["in_features"], sizes["out_features"],
                                       bias=sizes["bias"])
        elif isinstance(old, nn.Conv2d):
            # Conv2d's attributes are typed tuple[int, ...]; its constructor wants pairs.
            conv: Any = old
            new = nn.Conv2d(sizes["in_channels"], sizes["out_channels"], conv.kernel_size,
                            stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                            groups=conv.groups, bias=sizes["bias"], padding_mode=conv.padding_mode)
        else:
            new = type(old)(sizes["num_features"], eps=old.eps, momentum=old.momentum,
                            affine=old.affine, track_running_stats=old.track_running_stats)
        setattr(parent, child, new)
