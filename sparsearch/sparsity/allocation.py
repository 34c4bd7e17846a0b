"""Allocation: how a global sparsity target is spread over a model's prunable layers.

Notation (papers.md §6): S = global target, N_l = weights of layer l, s_l its sparsity,
d_l = 1 - s_l its density. Methods form a registry (``list_allocations``); each method's
keyword options and defaults (``allocation_options``) are searchable as
``"<method>.<option>"`` in a space file (e.g. ``erk.power``).

- uniform: s_l = S, optionally with the first and/or last layer dense and the rest raised
  to keep the total (RigL keeps the first layer dense; Fast Sparse ConvNets both ends).
- erk: Erdos-Renyi-Kernel from RigL (Evci et al., ICML 2020, arXiv 1911.11134):
  d_l = eps * (sum(shape_l) / prod(shape_l)) ** power, eps solved from the total; layers
  whose d_l would exceed 1 are made dense and eps is re-solved over the rest
  (``get_sparsities_erdos_renyi`` in ``rigl/sparse_utils.py``).
- global: one magnitude threshold over all the layers' |w| (Global MP), with the minimum
  threshold (MT) of Gupta et al., "Is Complexity Required for Neural Network Pruning? A
  Case Study on Global Magnitude Pruning" (arXiv 2209.14624): every layer keeps at least
  ``m = int(N_total * MT / 100)`` weights; layers smaller than m stay dense.
- layerwise: per-layer values given by the caller (the spec's per-group values); the
  other layers get the global target.

Contract for uniform, erk and global: every s_l is a whole number of weights over N_l
(``n_pruned(N_l, s_l)`` is exact), every s_l is in [0, 1) (each layer keeps at least one
weight), and sum(s_l * N_l) = round(S * sum(N_l)), i.e. within one weight of the target.
A target that the caps make impossible raises ValueError saying why. For layerwise the
total is what the given values imply.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from sparsearch.catalogue import Catalogue
from sparsearch.sparsity.masking import PrunableLayer, prunable_layers
from sparsearch.sparsity.patterns import n_pruned

__all__ = [
    "allocate",
    "allocation_options",
    "erk_densities",
    "list_allocations",
    "register_allocation",
]

# An allocation method: fn(layers, sparsity, **options) -> pruned weights per layer.
AllocationFn = Callable[..., dict[str, int]]

ALLOCATIONS: Catalogue[AllocationFn] = Catalogue("allocation")


def register_allocation(name: str) -> Callable[[AllocationFn], AllocationFn]:
    """Registers ``fn(layers: dict[name, module], sparsity, *, **options) -> counts``.

    The method's keyword-only parameters with their defaults are its searchable options.
    It returns the number of pruned weights per layer; ``allocate`` turns them into
    sparsities.
    """

    return ALLOCATIONS.decorator(name)


def list_allocations() -> list[str]:
    """Names accepted by ``allocate(method=...)``."""
    return ALLOCATIONS.names()


def allocation_options(method: str) -> dict[str, Any]:
    """The options of an allocation method and their defaults (``{"power": 1.0}``)."""
    params = inspect.signature(ALLOCATIONS.get(method)).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def allocate(
    model: nn.Module,
    sparsity: float,
    method: str,
    *,
    layers: Iterable[str] | None = None,
    **options: Any,
) -> dict[str, float]:
    """Per-layer sparsities that spread a global target over prunable layers.

    Args:
        model: the model; ``global`` reads its current weights.
        sparsity: global target in [0, 1), weighted by each layer's number of weights.
        method: one of ``list_allocations()``.
        layers: names of the Linear/Conv1d/Conv2d layers to allocate over (default: all of
            ``prunable_layers(model)``); other layers are not in the result.
        **options: the method's options (``allocation_options(method)``).

    Returns:
        ``{layer name: sparsity}`` in the model's definition order.

    Raises:
        ValueError: for a bad target, method, layer name or option, or a target the
            method cannot meet.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    allowed = allocation_options(method)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"allocation {method} has no option {unknown[0]!r}; "
                         f"allowed: {sorted(allowed)}")
    prunable = prunable_layers(model)
    if layers is None:
        selected = prunable
    else:
        wanted = list(layers)
        missing = [name for name in wanted if name not in prunable]
        if missing:
            raise ValueError(f"layers: {missing[0]!r} is not a Linear/Conv1d/Conv2d layer of the "
                             f"model; prunable layers: {list(prunable)}")
        chosen = set(wanted)
        selected = {name: module for name, module in prunable.items() if name in chosen}
    if not selected:
        raise ValueError("layers must name at least one prunable layer, got none")
    counts = ALLOCATIONS.get(method)(selected, float(sparsity), **options)
    return {name: counts[name] / selected[name].weight.numel() for name in selected}


def _sizes(layers: Mapping[str, PrunableLayer]) -> dict[str, int]:
    return {name: module.weight.numel() for name, module in layers.items()}


def _apportion(targets: Mapping[str, float], caps: Mapping[str, int], total: int) -> dict[str, int]:
    """Whole pruned counts near real ``targets``, each in [0, cap], summing to ``total``.

    Largest-remainder rounding: floor every target, then hand the missing units to the
    layers with the largest remainders (or take surplus units from the smallest).
    """
    if total > sum(caps.values()):
        raise ValueError("sparsity is too high for these layers: each layer must keep at "
                         "least one weight (or its minimum), so at most "
                         f"{sum(caps.values())} weights can be pruned, {total} asked")
    counts = {n: min(caps[n], max(0, math.floor(t))) for n, t in targets.items()}
    short = total - sum(counts.values())
    while short != 0:
        if short > 0:
            open_ = sorted((n for n in counts if counts[n] < caps[n]),
                           key=lambda n: targets[n] - counts[n], reverse=True)
            step = 1
        else:
            open_ = sorted((n for n in counts if counts[n] > 0),
                           key=lambda n: targets[n] - counts[n])
            step = -1
        for name in open_[:abs(short)]:
            counts[name] += step
        short -= step * len(open_[:abs(short)])
    return counts


def _solve(layers: Mapping[str, PrunableLayer], sparsity: float) -> tuple[dict[str, int], int]:
    sizes = _sizes(layers)
    return sizes, round(sparsity * sum(sizes.values()))


@register_allocation("uniform")
def _uniform(layers: Mapping[str, PrunableLayer], sparsity: float, *, keep_first: bool = False,
             keep_last: bool = False) -> dict[str, int]:
    sizes, total = _solve(layers, sparsity)
    names = list(sizes)
    dense = {names[0]} if keep_first else set()
    if keep_last:
        dense.add(names[-1])
    rest = [n for n in names if n not in dense]
    if total and not rest:
        raise ValueError("allocation uniform: keep_first/keep_last leave no layer to prune")
    rest_size = sum(sizes[n] for n in rest)
    # The remaining layers share the whole budget at one common sparsity.
    share = total / rest_size if rest_size else 0.0
    targets = {n: (0.0 if n in dense else share * sizes[n]) for n in names}
    caps = {n: (0 if n in dense else sizes[n] - 1) for n in names}
    return _apportion(targets, caps, total)


def erk_densities(
    shapes: Mapping[str, Sequence[int]], sparsity: float, *, power: float = 1.0
) -> dict[str, float]:
    """Erdos-Renyi-Kernel densities (RigL) that meet a global sparsity target.

    Args:
        shapes: weight shape per layer (``[out, in]``, ``[out, in, k]`` or
            ``[out, in, kh, kw]``).
        sparsity: global target in [0, 1), weighted by layer size.
        power: exponent on the raw density ``sum(shape) / prod(shape)`` (RigL's
            ``erk_power_scale``; 0 gives uniform).

    Returns:
        Density in (0, 1] per layer (not rounded to whole weights).

    Raises:
        ValueError: if every layer would have to be dense and the target is still unmet.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    if not (isinstance(power, (int, float)) and power >= 0.0 and math.isfinite(power)):
        raise ValueError(f"erk.power must be a finite number >= 0, got {power!r}")
    if 1.0 - sparsity == 1.0:
        # Zero, or so small (subnormal) that 1 - sparsity rounds to 1: every layer would be
        # capped dense and the loop below would report the target unmeetable.
        return {n: 1.0 for n in shapes}
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: (sum(s) / math.prod(s)) ** power for n, s in shapes.items()}
    dense: set[str] = set()
    while True:
        # RigL: sum_l eps * raw_l * N_l = (1 - S) * N_total - (kept weights of dense layers)
        rhs = sum((1.0 - sparsity) * sizes[n] for n in sizes if n not in dense)
        rhs -= sum(sparsity * sizes[n] for n in dense)
        divisor = sum(raw[n] * sizes[n] for n in sizes if n not in dense)
        if divisor <= 0.0:
            raise ValueError(f"allocation erk cannot meet sparsity {sparsity}: every layer "
                             "was capped dense")
        eps = rhs / divisor
        if eps <= 0.0:
            raise ValueError(f"allocation erk cannot meet sparsity {sparsity}: the layers "
                             "capped dense already hold more weights than the target keeps")
        free = [n for n in sizes if n not in dense]
        top = max(raw[n] for n in free)
        if eps * top <= 1.0:
            break
        # The densest layer(s) would exceed 1: make them dense and re-solve eps.
        dense.update(n for n in free if raw[n] == top)
        if len(dense) == len(sizes):
            raise ValueError(f"allocation erk cannot meet sparsity {sparsity}: every layer "
                             "was capped dense")
    return {n: 1.0 if n in dense else eps * raw[n] for n in sizes}


@register_allocation("erk")
def _erk(layers: Mapping[str, PrunableLayer], sparsity: float, *, power: float = 1.0
         ) -> dict[str, int]:
    sizes, total = _solve(layers, sparsity)
    shapes = {n: tuple(m.weight.shape) for n, m in layers.items()}
    densities = erk_densities(shapes, sparsity, power=power)
    targets = {n: (1.0 - d) * sizes[n] for n, d in densities.items()}
    caps = {n: (0 if densities[n] >= 1.0 else sizes[n] - 1) for n in sizes}
    return _apportion(targets, caps, total)


@register_allocation("global")
def _global(layers: Mapping[str, PrunableLayer], sparsity: float, *, min_threshold: float = 0.05
            ) -> dict[str, int]:
    if not (isinstance(min_threshold, (int, float)) and 0.0 <= min_threshold < 100.0):
        raise ValueError(f"global.min_threshold must be a percent in [0, 100), "
                         f"got {min_threshold!r}")
    sizes, total = _solve(layers, sparsity)
    names = list(sizes)
    # Global MP: the `total` smallest |w| over all layers, counted per layer.
    with torch.no_grad():
        flat = torch.cat([layers[n].weight.detach().abs().flatten().float().cpu()
                          for n in names])
    owner = torch.repeat_interleave(torch.arange(len(names)),
                                    torch.tensor([sizes[n] for n in names]))
    pruned = owner[torch.argsort(flat, stable=True)[:total]]
    base = dict(zip(names, torch.bincount(pruned, minlength=len(names)).tolist()))
    # MT: keep at least m = int(N_total * MT / 100) weights per layer (and always one).
    floor = max(1, int(sum(sizes.values()) * min_threshold / 100.0))
    caps = {n: max(0, sizes[n] - floor) for n in names}
    if all(base[n] <= caps[n] for n in names):
        return base
    if total <= sum(caps[n] for n in names if base[n] > 0):
        # Gupta et al. rescale every s_l by S / S_current and clamp at the floor until the
        # target is met; its fixed point is min(r * base_l, cap_l) with one common r.
        return _apportion(_water_fill(base, caps, total), caps, total)
    if total > sum(caps.values()):
        raise ValueError("allocation global cannot meet the sparsity: the minimum threshold "
                         "keeps too many weights (lower global.min_threshold)")
    # The rescale only grows layers the threshold already prunes; when those cannot hold
    # the target (their smallest weights all sit in layers at their floor), prune the
    # smallest |w| among the weights no floor protects: each layer's cap_l smallest.
    starts = torch.cumsum(torch.tensor([0] + [sizes[n] for n in names]), 0).tolist()
    candidates = [torch.sort(flat[starts[i]:starts[i + 1]]).values[:caps[n]]
                  for i, n in enumerate(names)]
    owner = torch.repeat_interleave(torch.arange(len(names)),
                                    torch.tensor([caps[n] for n in names]))
    pruned = owner[torch.argsort(torch.cat(candidates), stable=True)[:total]]
    return dict(zip(names, torch.bincount(pruned, minlength=len(names)).tolist()))


def _water_fill(base: Mapping[str, int], caps: Mapping[str, int], total: int) -> dict[str, float]:
    """Real counts ``min(r * base_l, cap_l)`` with ``r`` chosen so that they sum to ``total``."""
    scalable = [n for n in base if base[n] > 0 and caps[n] > 0]
    if total > sum(caps[n] for n in scalable):
        raise ValueError("allocation global cannot meet the sparsity: the minimum threshold "
                         "keeps too many weights (lower global.min_threshold)")
    # Visit layers in the order they hit their cap as r grows; the rest scale together.
    order = sorted(scalable, key=lambda n: caps[n] / base[n])
    capped_sum, free_base = 0.0, float(sum(base[n] for n in scalable))
    r = 0.0
    for name in order:
        r = (total - capped_sum) / free_base
        if r * base[name] <= caps[name]:
            break
        capped_sum += caps[name]
        free_base -= base[name]
    return {n: (min(r * base[n], caps[n]) if n in scalable else 0.0) for n in base}


@register_allocation("layerwise")
def _layerwise(layers: Mapping[str, PrunableLayer], sparsity: float, *,
               sparsities: Mapping[str, float] | None = None) -> dict[str, int]:
    given = dict(sparsities or {})
    unknown = sorted(set(given) - set(layers))
    if unknown:
        raise ValueError(f"layerwise.sparsities: {unknown[0]!r} is not one of the allocated "
                         f"layers {list(layers)}")
    sizes = _sizes(layers)
    counts = {}
    for name, size in sizes.items():
        value = given.get(name, sparsity)
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ValueError(f"layerwise.sparsities[{name!r}] must be in [0, 1), got {value!r}")
        # Keep one weight so the value stays below 1 after rounding.
        counts[name] = min(n_pruned(size, float(value)), size - 1)
    return counts
