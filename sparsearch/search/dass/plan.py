"""From a space file to a supernet plan, and from a derived choice back to a SubnetSpec.

DASS (Mousavi et al., arXiv 2207.06968) relaxes a discrete space; sparsearch relaxes the
same space file the random search samples (Farahani, arXiv 2403.08265, asks for exactly
this: the same space, so the comparison is like for like):

- macro: every prunable layer that no ``dense: true`` rule covers chooses among candidate
  sparse ops: each pattern the space allows that layer, with the continuous sparsity
  discretised to ``search.dass.levels`` points (``Dimension.grid``) and every N:M / block
  value. Layer-specific dimensions give that layer's candidates.
- space: one choice shared by every layer over the space's own points, each a spec random
  search can draw: every pattern, allocation and gridded sparsity (or N:M / block value),
  dense where the space allows it (``ops.space``). Derived specs keep the allocation.
- cell: the DARTS cell space, every sparse layer at one sparsity level chosen among the
  space's sparsity grid (unstructured, as DASS), or fixed by ``search.dass.keep`` (paper
  mode: one keep fraction per search, alpha chooses operations only).

The space's other dimensions (recipe, its knobs, lr, epochs, ...) are not architecture:
the derived subnets take them from ``search.dass.fixed``, else the first choice or the
middle of the range. ``allocation`` is what the macro supernet learns (layerwise); the
space supernet chooses it among the space's allocations.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field, replace
from typing import Any, cast

from sparsearch.config import ConfigError, DassConfig
from sparsearch.ops.masks import Candidate
from sparsearch.space import Dimension, LayerGroup, SearchSpace
from sparsearch.spec import LayerRule, SubnetSpec, parse_block, parse_nm

__all__ = ["SupernetPlan", "fixed_values", "layer_candidates", "plan_supernet",
           "space_targets", "training_dimensions"]

ARCH = ("pattern", "sparsity", "nm", "block")


@dataclass(frozen=True)
class SupernetPlan:
    """How to build the supernet and turn its choices into specs; plain, picklable data.

    Attributes:
        kind: macro | space | cell.
        base: the spec the derived subnets share (recipe, hparams, options).
        choices: candidates per layer name (macro).
        layer_order: every prunable layer of the backbone, in definition order (macro).
        targets: the specs the space supernet chooses among (space).
        sparsities: the sparsity levels of the cell supernet (cell).
        init_channels, cells: the cell supernet's size (cell).
    """

    kind: str
    base: SubnetSpec
    choices: dict[str, tuple[Candidate, ...]] = field(default_factory=dict)
    layer_order: tuple[str, ...] = ()
    targets: tuple[SubnetSpec, ...] = ()
    sparsities: tuple[float, ...] = ()
    init_channels: int = 8
    cells: int = 3

    def fingerprint(self) -> str:
        """Identity of the supernet this plan builds (for cached warm-up state)."""
        return json.dumps({"kind": self.kind, "choices": {k: [c.label for c in v]
                                                           for k, v in self.choices.items()},
                           "targets": [t.to_json() for t in self.targets],
                           "sparsities": self.sparsities, "init_channels": self.init_channels,
                           "cells": self.cells}, sort_keys=True)

    def macro_spec(self, chosen: dict[str, int], *, sizes: dict[str, int]) -> SubnetSpec:
        """The spec of a macro choice: one LayerRule per layer, glob = the exact name.

        The spec-level pattern is the one of the largest sparse layer (for display); its
        sparsity is the weighted sparsity of the whole subnet; ``layerwise`` allocation
        hands each layer the value of its rule.
        """
        rules, picked = [], {}
        for name in self.layer_order:
            if name in self.choices:
                picked[name] = self.choices[name][chosen[name]]
                rules.append(picked[name].rule(name))
            else:
                rules.append(LayerRule(glob=name, dense=True))
        total = sum(sizes.values())
        kept = sum(sizes[n] * (picked[n].density if n in picked else 1.0) for n in sizes)
        overall = round(min(max(1.0 - kept / total, 0.0), 0.9999), 6)
        sparse = [n for n in picked if picked[n].pattern != "dense"]
        if not sparse:
            return replace(self.base, pattern="dense", sparsity=0.0, nm=None, block=None,
                           allocation="uniform", layers=tuple(rules))
        top = picked[max(sparse, key=lambda n: sizes[n])]
        return replace(
            self.base, pattern=top.pattern, sparsity=0.0 if top.pattern == "nm" else overall,
            nm=f"{top.nm[0]}:{top.nm[1]}" if top.nm else None,
            block=f"{top.block[0]}x{top.block[1]}" if top.block else None,
            allocation="layerwise", layers=tuple(rules))

    def cell_spec(self, genotype: dict[str, Any], level: int) -> tuple[SubnetSpec, dict]:
        """The spec and model options of a derived cell network (uniform sparsity, as DASS)."""
        options = {**self.base.options, "cell.genotype": json.dumps(genotype, sort_keys=True)}
        spec = replace(self.base, pattern="unstructured", sparsity=self.sparsities[level],
                       nm=None, block=None, allocation="uniform", options=options, layers=())
        model = {"kind": "darts_cell", "genotype": genotype,
                 "init_channels": self.init_channels, "cells": self.cells}
        return spec, model


def _middle(dim: Dimension) -> Any:
    points = dim.grid(3)
    return points[len(points) // 2] if dim.kind in ("float", "int") else points[0]


def training_dimensions(space: SearchSpace) -> dict[str, Dimension]:
    """The space's non-architecture dimensions (recipe, its knobs, hparams), in order."""
    from sparsearch.sparsity.allocation import list_allocations

    allocations = set(list_allocations())
    return {name: dim for name, dim in space.params.items()
            if name not in ARCH and name != "allocation"
            and name.split(".", 1)[0] not in allocations}


def fixed_values(space: SearchSpace, overrides: dict[str, Any]) -> dict[str, Any]:
    """Values of the space's non-architecture dimensions (recipe, knobs, hparams).

    Raises:
        ConfigError: an override names no such dimension or a value it cannot take.
    """
    dims = training_dimensions(space)
    for name, value in overrides.items():
        if name not in dims:
            raise ConfigError(f"search.dass.fixed.{name}: not a non-architecture parameter of "
                              f"space {space.source}; allowed: {sorted(dims)}")
        dim = dims[name]
        # A float / int range always has its bounds (checked when the space is read).
        ok = (value in dim.possible_values() if dim.kind in ("choice", "fixed")
              else isinstance(value, (int, float))
              and cast(float, dim.low) <= value <= cast(float, dim.high))
        if not ok:
            raise ConfigError(f"search.dass.fixed.{name}: {value!r} is outside the space's "
                              f"{dim.kind} {dim.possible_values()}")
    values: dict[str, Any] = {}
    for name, dim in dims.items():
        if any(key in ARCH or key == "allocation" for key in dim.when):
            raise ConfigError(f"not supported: search.strategy=dass with params.{name}.when on "
                              f"an architecture parameter ({sorted(dim.when)})")
        if dim.active(values):
            values[name] = overrides.get(name, _middle(dim))
    return values


def _group_for(space: SearchSpace, layer: str) -> LayerGroup | None:
    for group in space.layers:
        if fnmatch.fnmatchcase(layer, group.glob):
            return group
    return None


def layer_candidates(space: SearchSpace, layer: str, *, levels: int,
                     fixed: dict[str, Any]) -> tuple[Candidate, ...]:
    """The candidate sparse ops of one layer (empty: the layer stays dense).

    Args:
        space: the parsed space.
        layer: the layer's module name.
        levels: points of each continuous sparsity range.
        fixed: the non-architecture values (for ``when`` conditions).
    """
    group = _group_for(space, layer)
    if group is not None and group.dense:
        return ()
    dims: dict[str, Dimension] = {k: space.params[k] for k in ARCH if k in space.params}
    if group is not None:
        dims.update(group.dims)
    patterns = dims["pattern"].possible_values() if "pattern" in dims else ["unstructured"]
    out: list[Candidate] = []
    for pattern in patterns:
        chosen = {**fixed, "pattern": pattern}

        def values(key: str, chosen: dict[str, Any] = chosen) -> list[Any]:
            dim = dims.get(key)
            return dim.grid(levels) if dim is not None and dim.active(chosen) else []

        sparsities = [float(s) for s in values("sparsity")] or [0.0]
        if pattern == "dense":
            out.append(Candidate("dense"))
        elif pattern == "nm":
            out.extend(Candidate("nm", nm=parse_nm(v)) for v in values("nm"))
        elif pattern == "block":
            out.extend(Candidate("block", sparsity=s, block=parse_block(b))
                       for b in values("block") for s in sparsities)
        else:
            out.extend(Candidate(pattern, sparsity=s) for s in sparsities)
    return tuple(dict.fromkeys(out))


def plan_supernet(space: SearchSpace, *, layer_names: list[str], in_shape: tuple[int, ...],
                  dass: DassConfig) -> SupernetPlan:
    """Builds the plan of ``search.dass.supernet`` over ``space``.

    Raises:
        ConfigError: the space cannot be relaxed by this supernet ("not supported: ...").
    """
    fixed = fixed_values(space, dict(dass.fixed))
    base = space.to_spec(fixed)
    base = replace(base, options={k: v for k, v in base.options.items()
                                  if k.startswith(f"{base.recipe}.")})
    if dass.supernet == "cell":
        return _cell_plan(space, base=base, in_shape=in_shape, dass=dass, fixed=fixed)
    if dass.supernet == "space":
        targets = space_targets(space, levels=dass.levels, fixed=fixed)
        if all(t.pattern == "dense" or (t.pattern != "nm" and t.target_sparsity == 0)
               for t in targets):
            raise ConfigError(f"not supported: search.strategy=dass on space {space.source}, "
                              f"which leaves every layer dense")
        return SupernetPlan(kind="space", base=base, targets=targets,
                            layer_order=tuple(layer_names))
    choices = {}
    for name in layer_names:
        candidates = layer_candidates(space, name, levels=dass.levels, fixed=fixed)
        if len(candidates) > 0:
            choices[name] = candidates
    if not choices:
        raise ConfigError(f"not supported: search.strategy=dass on space {space.source}, "
                          f"which leaves every layer dense")
    return SupernetPlan(kind="macro", base=base, choices=choices, layer_order=tuple(layer_names))


def space_targets(space: SearchSpace, *, levels: int,
                  fixed: dict[str, Any]) -> tuple[SubnetSpec, ...]:
    """Every spec random search can draw on the grid: each active architecture dimension
    (pattern, allocation, sparsity, nm, block) at its choices or ``levels`` points, the
    training values ``fixed``. An allocation moves nothing for N:M or dense, so those
    take the space's first one.

    Raises:
        ConfigError: the space has per-layer dimensions (not supported by this supernet).
    """
    if any(group.dims for group in space.layers):
        raise ConfigError(f"not supported: search.dass.supernet=space with per-layer "
                          f"dimensions in space {space.source} (use supernet=macro)")
    points: list[dict[str, Any]] = [dict(fixed)]
    for key in ("pattern", "allocation", "sparsity", "nm", "block"):
        dim = space.params.get(key)
        if dim is None:
            continue
        grown: list[dict[str, Any]] = []
        for values in points:
            moot = key == "allocation" and values.get("pattern") in ("nm", "dense")
            if not dim.active(values) or moot:
                grown.append(values if not moot else {**values, key: dim.grid(levels)[0]})
                continue
            grown.extend({**values, key: value} for value in dim.grid(levels))
        points = grown
    specs: dict[str, SubnetSpec] = {}
    for values in points:
        spec = space.to_spec(values)
        specs.setdefault(spec.to_json(), spec)
    return tuple(specs.values())


def _cell_plan(space: SearchSpace, *, base: SubnetSpec, in_shape: tuple[int, ...],
               dass: DassConfig, fixed: dict[str, Any]) -> SupernetPlan:
    if len(in_shape) != 3:
        raise ConfigError(f"not supported: search.dass.supernet=cell on non-image data "
                          f"(input shape {in_shape}); use data=digits, cifar10 or imagefolder")
    if space.layers:
        raise ConfigError(f"not supported: search.dass.supernet=cell with layers rules in space "
                          f"{space.source} (the cell network has its own layers)")
    pattern = space.params.get("pattern")
    if pattern is not None and pattern.possible_values() != ["unstructured"]:
        raise ConfigError(f"not supported: search.dass.supernet=cell with patterns "
                          f"{pattern.possible_values()}; the cell supernet prunes unstructured "
                          f"(as DASS)")
    sparsity = space.params.get("sparsity")
    if dass.keep is not None:
        # Paper mode: one keep fraction for the whole search; alpha picks operations.
        levels = [round(1.0 - dass.keep, 6)]
    elif sparsity is not None and sparsity.active({**fixed, "pattern": "unstructured"}):
        levels = [float(s) for s in sparsity.grid(dass.levels)]
    else:
        levels = [0.0]
    return SupernetPlan(kind="cell", base=base, sparsities=tuple(dict.fromkeys(levels)),
                        init_channels=dass.init_channels, cells=dass.cells)
