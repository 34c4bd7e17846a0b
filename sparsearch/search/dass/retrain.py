"""After the sweep converges: the front's subnets retrained under the space's other
training values, so the strategy spends its whole budget ("anytime").

DASS (Mousavi et al., arXiv 2207.06968) searches the architecture; the space's training
dimensions (recipe, lr, epochs, batch size, weight decay) are not differentiable and the
derived subnets train with one value each (``plan.fixed_values``). Once new lambdas and
finer rounds add no new subnet, the remaining budget trains the DASS front again under the
other values of those dimensions (choices, and continuous ranges discretised to
``search.dass.levels`` points), sparsest subnet first, one variant per front subnet in
turn; when those are spent, on grids twice as fine (``retrain_levels``), so a long budget
is spent too. The random baseline (Farahani, arXiv 2403.08265) explores the same dimensions by
sampling; here they are enumerated on the architectures DASS found.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

from sparsearch.search.dass.sweep import SweepPoint
from sparsearch.space import HPARAMS, SearchSpace
from sparsearch.spec import SubnetSpec

__all__ = ["RETRAIN_PASSES", "dass_front", "retrain_levels", "training_variants",
           "variant_spec"]

RETRAIN_PASSES = 4  # after the first grid, this many grids, each twice as fine


def retrain_levels(levels: int) -> list[int]:
    """Points per range of each retraining grid: ``levels``, then ``2 * (levels - 1) + 1``
    and so on, so each grid holds every point of the one before (the same floats: the
    fractions ``i / (n - 1)`` agree exactly), between them the new ones."""
    if levels < 2:
        return [levels]
    return [(levels - 1) * 2 ** p + 1 for p in range(RETRAIN_PASSES + 1)]


def training_variants(space: SearchSpace, fixed: dict[str, Any], *,
                      levels: int) -> list[dict[str, Any]]:
    """Every combination of the space's recipe and hparam values (unconditional ones).

    Variants that change fewer values come first, so each front subnet first meets its
    nearest alternatives.
    """
    axes = []
    for name, dim in space.params.items():
        if (name == "recipe" or name in HPARAMS) and not dim.when:
            values = dim.grid(levels) if dim.kind in ("float", "int") else dim.possible_values()
            axes.append((name, list(values)))
    combos = [dict(zip([n for n, _ in axes], values))
              for values in itertools.product(*[v for _, v in axes])]
    return sorted(combos, key=lambda c: sum(fixed.get(k) != v for k, v in c.items()))


def variant_spec(spec: SubnetSpec, variant: dict[str, Any], fixed: dict[str, Any]) -> SubnetSpec:
    """``spec`` trained with ``variant``'s recipe and hparams (a new recipe's knobs from
    ``fixed`` when it has them, else its defaults; the same recipe keeps its options, e.g.
    an ``inherited`` subnet's file; other options, e.g. a cell genotype, kept)."""
    recipe = str(variant.get("recipe", spec.recipe))
    hparams = {**spec.hparams, **{k: HPARAMS[k](v) for k, v in variant.items() if k in HPARAMS}}
    if recipe == spec.recipe:
        return replace(spec, hparams=hparams)
    options = {k: v for k, v in spec.options.items() if not k.startswith(f"{spec.recipe}.")}
    options.update({k: v for k, v in fixed.items() if k.startswith(f"{recipe}.")})
    return replace(spec, recipe=recipe, hparams=hparams, options=options)


def dass_front(points: Sequence[SweepPoint]) -> list[SweepPoint]:
    """The sweep's non-dominated subnets by (cost min, accuracy max), sparsest first."""
    trained = [p for p in points if p.duplicate_of is None and p.retrain_of is None
               and p.accuracy is not None]
    # ``trained`` keeps only points with an accuracy; the pairs say so to mypy.
    scored = [(p, cast(float, p.accuracy)) for p in trained]
    front = [p for p, acc in scored
             if not any(q.cost <= p.cost and q_acc >= acc
                        and (q.cost < p.cost or q_acc > acc) for q, q_acc in scored)]
    return sorted(front, key=lambda p: (p.cost, -float(p.accuracy or 0.0)))
