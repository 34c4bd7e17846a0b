"""The training-value probe: which recipe and hparams DASS's derived subnets train with.

DASS (Mousavi et al., arXiv 2207.06968) decides where the zeros go; the space's training
dimensions (lr, weight decay, batch size, epochs, recipe) are not differentiable, and the
derived subnets used to train with one value each (``plan.fixed_values``: the first choice
or the middle of the range) until the lambda sweep ended. On MNIST-1D the learning rate
moved test hypervolume more than the supernet's placement of zeros, and random search
samples it from its first trial. With ``search.dass.probe`` (default on), the first subnet
the sweep derives is trained again under the other values of one dimension at a time
(coordinate search: the hparams in the space's order, then the recipe; ranges at
``search.dass.levels`` points), each dimension settled at its best validation accuracy
before the next is tried; the rest of the sweep trains with the values found. The probe's
trainings are trials of the search like any other (they may join the front).

Dimensions set in ``search.dass.fixed`` or conditional on another (``when``) are not
probed; with ``search.dass.inherit`` the recipe is ``inherited`` and only hparams are.
``next_probe`` is a pure function of what has been trained, so a resumed search continues
the probe where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sparsearch.space import HPARAMS, SearchSpace

__all__ = ["ProbeStep", "next_probe", "probe_axes", "variant_key"]


def variant_key(values: Mapping[str, Any]) -> str:
    """The identity of a set of training values (JSON, keys sorted)."""
    return json.dumps(dict(values), sort_keys=True, default=str)


def probe_axes(space: SearchSpace, *, levels: int, fixed: Mapping[str, Any],
               recipe: bool) -> list[tuple[str, list[Any]]]:
    """The dimensions the probe tries, in order, each with its values.

    Args:
        space: the parsed space.
        levels: points of each float / int range.
        fixed: ``search.dass.fixed`` (those dimensions are not probed).
        recipe: whether the recipe is probed (not with ``search.dass.inherit``).
    """
    hparams, recipes = [], []
    for name, dim in space.params.items():
        if name in fixed or dim.when:
            continue
        if name in HPARAMS:
            values = (dim.grid(levels) if dim.kind in ("float", "int")
                      else dim.possible_values())
            hparams.append((name, [HPARAMS[name](v) for v in values]))
        elif name == "recipe" and recipe:
            recipes.append((name, list(dim.possible_values())))
    return [(name, values) for name, values in [*hparams, *recipes] if len(values) > 1]


@dataclass(frozen=True)
class ProbeStep:
    """What the probe wants next.

    Attributes:
        action: ``train`` (train the source subnet with ``values``), ``wait`` (a training
            it depends on is still running) or ``done`` (``values`` are the probe's choice).
        values: the training values (one per probed dimension).
    """

    action: str
    values: dict[str, Any] = field(default_factory=dict)


def next_probe(axes: list[tuple[str, list[Any]]], start: Mapping[str, Any],
               finished: Mapping[str, float | None], pending: set[str]) -> ProbeStep:
    """The probe's next step (coordinate search over ``axes``).

    Args:
        axes: from ``probe_axes``.
        start: the values the source subnet was first trained with (one per axis).
        finished: validation accuracy per trained variant (``variant_key``); None: failed.
        pending: the variants still training.

    Each dimension's candidates are its current value (tried first) and its other values;
    the best accuracy wins (ties: the current value, then the earlier one), failed ones
    never win. The next dimension starts from that choice.
    """
    current = dict(start)
    for name, values in axes:
        candidates = [current] + [{**current, name: v} for v in values if v != current[name]]
        waiting = False
        for candidate in candidates:
            key = variant_key(candidate)
            if key in finished:
                continue
            if key in pending:
                waiting = True
                continue
            return ProbeStep("train", candidate)
        if waiting:
            return ProbeStep("wait")
        scored = [(finished[variant_key(c)], i, c) for i, c in enumerate(candidates)]
        ok = [(acc, i, c) for acc, i, c in scored if acc is not None]
        if ok:
            current = max(ok, key=lambda s: (s[0], -s[1]))[2]
    return ProbeStep("done", current)
