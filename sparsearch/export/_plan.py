"""From a (masked) model to an export plan: which layers go sparse, stored how, run how.

Works on any ``nn.Module`` whose pruned weights are exact zeros, whether the zeros were
baked in or still sit behind ``torch.nn.utils.parametrize`` masks (``layer.weight`` is then
the masked weight, and the state is written under the unparametrized names).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from sparsearch.export._detect import detect_format
from sparsearch.export._layers import RouteUnavailable, build_layer, layer_geometry
from sparsearch.export._tuning import LayerTiming, tune_layer
from sparsearch.kernels import SparseWeight

__all__ = ["LayerPlan", "ModelPlan", "effective_state_dict", "example_for", "plan_model",
           "strip_parametrizations",
           "swap_layers", "tune_plan"]

log = logging.getLogger("sparsearch.export")

# Conv layers timed without an example input see this spatial size.
DEFAULT_CONV_HW = 16


@dataclass
class LayerPlan:
    """One swappable layer of the model.

    Attributes:
        name: module name in the model.
        geometry: from ``layer_geometry``.
        layout: GEMM layout of ``weight``.
        weight: the stored weight.
        bias: the layer's bias or None.
        sample_shape: the layer's input shape without the batch dimension.
        timings: one dispatch per batch-size class (empty until tuned).
    """

    name: str
    geometry: dict[str, Any]
    layout: str
    weight: SparseWeight
    bias: torch.Tensor | None
    sample_shape: tuple[int, ...]
    timings: list[LayerTiming] = field(default_factory=list)

    def kernels(self, batch_sizes: Sequence[int]) -> list[str]:
        """Kernel per class of ``batch_sizes`` (dense where not tuned)."""
        chosen = {t.batch_size: t.kernel for t in self.timings}
        return [chosen.get(b, "dense") for b in sorted(batch_sizes)]


@dataclass
class ModelPlan:
    """Every swappable layer, plus the rest of the state, of one model."""

    layers: dict[str, LayerPlan]
    state: dict[str, torch.Tensor]
    input_shape: tuple[int, ...] | None


def effective_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``state_dict`` as the unparametrized model would have it, with masks applied."""
    state: dict[str, torch.Tensor] = {}

    def visit(module: nn.Module, prefix: str) -> None:
        masked = parametrize.is_parametrized(module)
        if masked:
            for name in module.parametrizations:
                state[prefix + name] = getattr(module, name).detach()
        for name, p in module._parameters.items():
            if p is not None:
                state[prefix + name] = p.detach()
        for name, b in module._buffers.items():
            if b is not None and name not in module._non_persistent_buffers_set:
                state[prefix + name] = b.detach()
        for name, child in module._modules.items():
            if child is not None and not (masked and name == "parametrizations"):
                visit(child, f"{prefix}{name}.")

    with torch.no_grad():
        visit(model, "")
    return state


def strip_parametrizations(model: nn.Module) -> None:
    """Bakes every parametrization into a plain parameter, in place.

    Not ``parametrize.remove_parametrizations``: that deletes the property from the
    module's generated class, which a ``copy.deepcopy`` of the model shares with the
    original, so unmasking a copy would break the original.
    """
    for module in list(model.modules()):
        if not parametrize.is_parametrized(module):
            continue
        with torch.no_grad():
            values = {name: getattr(module, name).detach().clone()
                      for name in module.parametrizations}
        del module._modules["parametrizations"]
        module.__class__ = module.__class__.__bases__[0]
        for name, value in values.items():
            module.register_parameter(name, nn.Parameter(value, requires_grad=False))


def example_for(model: nn.Module, example_input: torch.Tensor | None) -> torch.Tensor | None:
    """A batch-1 input for the model: the caller's, or one from ``sparsearch_build``."""
    if example_input is not None:
        return example_input[:1]
    build = getattr(model, "sparsearch_build", None)
    if build is None:
        return None
    generator = torch.Generator().manual_seed(0)
    return torch.randn(1, *build["in_shape"], generator=generator)


def _record_input_shapes(model: nn.Module, layers: dict[str, nn.Module],
                         example: torch.Tensor) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}

    def hook(name: str):
        def record(_: nn.Module, args: tuple[Any, ...]) -> None:
            if args and isinstance(args[0], torch.Tensor):
                shapes.setdefault(name, tuple(args[0].shape[1:]))
        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layers.items()]
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        if param is not None:
            example = example.to(device=param.device, dtype=param.dtype)
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return shapes


def _default_sample_shape(geometry: dict[str, Any]) -> tuple[int, ...]:
    if geometry["type"] == "linear":
        return (geometry["in_features"],)
    reach = [d * (k - 1) + 1 for d, k in zip(geometry["dilation"], geometry["kernel_size"])]
    return (geometry["in_channels"], max(DEFAULT_CONV_HW, reach[0]),
            max(DEFAULT_CONV_HW, reach[1]))


def plan_model(model: nn.Module, *, example_input: torch.Tensor | None = None,
               block_hint: tuple[int, int] | None = None) -> ModelPlan:
    """Finds the swappable layers, their input shapes and their storage formats.

    Args:
        model: any module; pruned weights must be exact zeros (masks may still be applied).
        example_input: a model input (any batch size). Layers it does not reach stay
            plain state; without it, every plain Linear/Conv2d is planned.
        block_hint: a block shape to try first when detecting formats.
    """
    candidates = {name: m for name, m in model.named_modules()
                  if name and layer_geometry(m) is not None}
    example = example_for(model, example_input)
    shapes = _record_input_shapes(model, candidates, example) if example is not None else None
    state = effective_state_dict(model)
    layers: dict[str, LayerPlan] = {}
    for name, module in candidates.items():
        if shapes is not None and name not in shapes:
            continue  # never called in forward: its parent may read the weight directly
        geometry = layer_geometry(module)
        layout, weight = detect_format(state.pop(f"{name}.weight"), block_hint=block_hint)
        sample_shape = shapes[name] if shapes is not None else _default_sample_shape(geometry)
        bias = state.get(f"{name}.bias")
        layers[name] = LayerPlan(name, geometry, layout, weight,
                                 None if bias is None else bias.cpu(), tuple(sample_shape))
    input_shape = tuple(example.shape[1:]) if example is not None else None
    return ModelPlan(layers, state, input_shape)


def _measurement_key(layer: LayerPlan) -> str:
    """Layers with equal keys run the same kernels on the same work: one timing serves all.

    Density is rounded to 0.1%: masks from one allocation differ by a few weights per layer.
    """
    return json.dumps([layer.geometry, layer.layout, layer.weight.format, layer.weight.params,
                       list(layer.weight.shape), round(layer.weight.density, 3),
                       list(layer.sample_shape)], sort_keys=True)


def tune_plan(plan: ModelPlan, *, device: torch.device | str, dtype: torch.dtype,
              batch_sizes: Sequence[int], min_run_time_s: float, rounds: int,
              min_speedup: float) -> None:
    """Times every sparse layer of ``plan`` (dense-format layers need no timing).

    Layers of the same shape, format and density share the first one's measurement, so
    identical layers cannot land on different kernels by timing noise (and the export
    takes a third of the time on a three-layer MLP).
    """
    measured: dict[str, LayerPlan] = {}
    for layer in plan.layers.values():
        if layer.weight.format == "dense":
            layer.timings = [LayerTiming(b, "dense", 1.0, {}) for b in sorted(batch_sizes)]
            continue
        key = _measurement_key(layer)
        first = measured.get(key)
        if first is not None:
            layer.timings = [copy.deepcopy(t) for t in first.timings]
            for timing in layer.timings:
                timing.shared_with = first.name
        else:
            measured[key] = layer
            layer.timings = tune_layer(layer.geometry, layer.weight, layout=layer.layout,
                                       bias=layer.bias, sample_shape=layer.sample_shape,
                                       batch_sizes=batch_sizes, device=device, dtype=dtype,
                                       min_run_time_s=min_run_time_s, rounds=rounds,
                                       min_speedup=min_speedup)
        log.info("sparsearch.export: %s %s -> %s", layer.name, layer.weight.format,
                 ", ".join(f"{t.batch_size}: {t.kernel} {t.speedup:.2f}x" for t in layer.timings))


def _fall_back(layer: LayerPlan, kernel: str, reason: str) -> None:
    """Replaces ``kernel`` in every class by the next fastest recorded kernel."""
    log.warning("sparsearch.export: %s cannot use %s here (%s); using the next fastest",
                layer.name, kernel, reason)
    for timing in layer.timings:
        if timing.kernel == kernel:
            timing.times_ms.pop(kernel, None)
            ranked = sorted(timing.times_ms, key=timing.times_ms.__getitem__)
            timing.kernel = ranked[0] if ranked else "dense"
            dense_ms = timing.times_ms.get("dense")
            timing.speedup = dense_ms / timing.times_ms[timing.kernel] if dense_ms else 1.0
            timing.rejected[kernel] = reason


def swap_layers(model: nn.Module, plan: ModelPlan, *, device: torch.device | str,
                dtype: torch.dtype, batch_sizes: Sequence[int]) -> None:
    """Replaces every planned layer of ``model`` by its inference module, in place.

    A recorded kernel that cannot run here (its C++ build failed on this machine, say)
    gives way to the next fastest kernel recorded for that class; dense is always there.
    """
    for layer in plan.layers.values():
        parent_name, _, child = layer.name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, child)
        bias = old.bias.detach() if getattr(old, "bias", None) is not None else layer.bias
        while True:
            try:
                new = build_layer(layer.geometry, layer.weight, layout=layer.layout,
                                  kernels=layer.kernels(batch_sizes), batch_sizes=batch_sizes,
                                  bias=bias, device=device, dtype=dtype)
                break
            except RouteUnavailable as err:
                _fall_back(layer, err.kernel, err.reason)
        setattr(parent, child, new)

