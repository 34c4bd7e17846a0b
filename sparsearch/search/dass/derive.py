"""Deriving one subnet from a trained supernet: argmax-alpha or DARTS-PT's perturbation.

- argmax (DARTS, Liu et al., arXiv 1806.09055, ``genotype()``): each decision takes its
  largest softmax(alpha); in a cell each node keeps the 2 incoming edges with the largest
  non-``none`` weight, each with its best non-``none`` op.
- pt (DARTS-PT, Wang et al., "Rethinking Architecture Selection in Differentiable NAS",
  ICLR 2021, arXiv 2108.04392, ``sota/cnn/projection.py``): decisions in random order; for
  each, mask out one candidate at a time (its weight set to 0, the others kept) and measure
  the supernet's accuracy ACC\\o on held-out data (in a search: the part of the train
  split alpha trains on, never the val split that scores the derived subnets); keep
  ``o* = argmin_o ACC\\o``, the candidate whose removal hurts most; fix the decision to it
  and fine-tune the supernet (``tune``; at a tenth of the lr in a search, and in a cell
  network after each pair of one normal and one reduce edge, as DARTS-PT projects them).
  Cells then select their topology the same way: per node, repeatedly drop the incoming
  edge whose removal leaves the *highest* accuracy until 2 remain. The supernet is the masked (pruned) one, as DARTS-PT's note for sparse
  supernets asks. On a choice among sparsity levels, removing the denser mask always hurts
  most, so the plain criterion ignores what DASS optimises; there PT keeps
  ``o* = argmin_o ACC\\o + lambda * cost_o`` (``cost_o``: the supernet's E[cost] with the
  decision fixed to o, dense = 1), the same cost weight lambda as alpha's objective.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from sparsearch.ops.cells import STEPS, CellSupernet
from sparsearch.ops.supernet import Supernet

__all__ = ["Derivation", "derive_argmax", "derive_pt", "genotype_of", "node_edges"]


@dataclass
class Derivation:
    """A derived subnet, as supernet indices.

    Attributes:
        choices: candidate index per decision.
        edges: kept edge indices per cell kind (cell supernets only).
        pt: accuracy with each candidate removed, per decision (derive=pt only).
        pt_cost: cost with each candidate kept, per sparsity decision (cost-aware PT only).
    """

    choices: dict[str, int]
    edges: dict[str, list[int]] = field(default_factory=dict)
    pt: dict[str, list[float | None]] = field(default_factory=dict)
    pt_cost: dict[str, list[float]] = field(default_factory=dict)


def node_edges(node: int) -> list[int]:
    """Edge indices entering intermediate node ``node`` (0-based); edge j comes from state j."""
    start = sum(2 + i for i in range(node))
    return list(range(start, start + 2 + node))


def _none_index(net: Supernet, decision: str) -> int | None:
    labels = net.labels(decision)
    return labels.index("none") if isinstance(net, CellSupernet) and "none" in labels else None


def _best(net: Supernet, decision: str) -> int:
    p = net.probs(decision).clone()
    skip = _none_index(net, decision)
    if skip is not None:
        p[skip] = -1.0
    return int(p.argmax())


def derive_argmax(net: Supernet) -> Derivation:
    """Every decision at its largest softmax(alpha) (non-``none``); cells keep 2 edges/node."""
    choices = {d: _best(net, d) for d in net.decisions()}
    edges: dict[str, list[int]] = {}
    if isinstance(net, CellSupernet):
        for kind in ("normal", "reduce"):
            kept: list[int] = []
            for node in range(STEPS):
                def strength(e: int, kind: str = kind) -> float:
                    return float(net.probs(f"{kind}:{e}")[choices[f"{kind}:{e}"]])

                kept.extend(sorted(sorted(node_edges(node), key=strength, reverse=True)[:2]))
            edges[kind] = kept
    return Derivation(choices=choices, edges=edges)


def _current(net: Supernet, decision: str) -> torch.Tensor:
    return net.overrides.get(decision, net.probs(decision))


def _kept_costs(net: Supernet, decision: str, cost: str) -> list[float]:
    base = _current(net, decision)
    costs = []
    for i in range(len(base)):
        net.set_override(decision, net.one_hot(decision, i))
        costs.append(float(net.expected_cost(cost).detach()))
    net.set_override(decision, base)
    return costs


def _tuning_groups(net: Supernet, rng: random.Random) -> list[list[str]]:
    """The decisions in random order, grouped by the tune that follows them: DARTS-PT
    projects one normal and one reduce edge of a cell network before each tune; every
    other decision is tuned after on its own."""
    if not isinstance(net, CellSupernet):
        order = net.decisions()
        rng.shuffle(order)
        return [[d] for d in order]
    kinds = {kind: [d for d in net.decisions() if d.startswith(f"{kind}:")]
             for kind in ("normal", "reduce")}
    for decisions in kinds.values():
        rng.shuffle(decisions)
    return [[n, r] for n, r in zip(kinds["normal"], kinds["reduce"])] + [["sparsity"]]


def _decide(net: Supernet, decision: str, *, accuracy: Callable[[], float], lam: float,
            cost: str | None) -> tuple[int, list[float | None], list[float]]:
    r"""(o*, ACC\o per candidate, cost_o per candidate) of one decision, which it fixes."""
    base = _current(net, decision)
    skip = _none_index(net, decision)
    scores: list[float | None] = []
    for i in range(len(base)):
        if i == skip:
            scores.append(None)
            continue
        removed = base.clone()
        removed[i] = 0.0  # mask out candidate i, keep the others (ACC\o)
        net.set_override(decision, removed)
        scores.append(accuracy())
    costs = _kept_costs(net, decision, cost) if cost is not None else [0.0] * len(base)
    # o* = argmin_o ACC\o + lambda * cost_o; ties go to the larger alpha.
    probs = net.probs(decision)
    scored = [(i, s) for i, s in enumerate(scores) if s is not None]
    choice = min(scored, key=lambda p: (p[1] + lam * costs[p[0]], -float(probs[p[0]])))[0]
    net.set_override(decision, net.one_hot(decision, choice))
    return choice, scores, costs


def derive_pt(net: Supernet, *, accuracy: Callable[[], float], tune: Callable[[], None],
              seed: int, lam: float = 0.0, cost: str = "density") -> Derivation:
    """DARTS-PT's perturbation-based selection (operations, then cell topology).

    Args:
        net: the trained supernet; its overrides end one-hot (and edges dropped).
        accuracy: held-out accuracy of the supernet as it is now.
        tune: fine-tunes the supernet after each decision (each normal/reduce pair).
        seed: order of the decisions.
        lam: the cost weight of sparsity decisions (0: DARTS-PT's plain criterion).
        cost: the cost the weight applies to (density | flops).
    """
    rng = random.Random(seed)
    choices: dict[str, int] = {}
    table: dict[str, list[float | None]] = {}
    cost_table: dict[str, list[float]] = {}
    priced = set(net.sparsity_decisions()) if lam else set()
    for group in _tuning_groups(net, rng):
        for decision in group:
            choice, scores, costs = _decide(net, decision, accuracy=accuracy, lam=lam,
                                            cost=cost if decision in priced else None)
            choices[decision], table[decision] = choice, scores
            if decision in priced:
                cost_table[decision] = costs
        tune()
    edges = _pt_topology(net, accuracy=accuracy, tune=tune, rng=rng) \
        if isinstance(net, CellSupernet) else {}
    return Derivation(choices=choices, edges=edges, pt=table, pt_cost=cost_table)


def _pt_topology(net: CellSupernet, *, accuracy: Callable[[], float],
                 tune: Callable[[], None], rng: random.Random) -> dict[str, list[int]]:
    edges: dict[str, list[int]] = {}
    for kind in ("normal", "reduce"):
        nodes = list(range(STEPS))
        rng.shuffle(nodes)
        kept_all: list[int] = []
        for node in nodes:
            active = node_edges(node)
            while len(active) > 2:
                results = []
                for e in active:
                    decision = f"{kind}:{e}"
                    kept = _current(net, decision)
                    net.set_override(decision, torch.zeros_like(kept))
                    results.append((accuracy(), e))
                    net.set_override(decision, kept)
                _, drop = max(results, key=lambda r: (r[0], -r[1]))
                decision = f"{kind}:{drop}"
                net.set_override(decision, torch.zeros_like(_current(net, decision)))
                active.remove(drop)
                tune()
            kept_all.extend(active)
        edges[kind] = sorted(kept_all)
    return edges


def genotype_of(net: CellSupernet, derivation: Derivation) -> dict[str, Any]:
    """The genotype ``{"normal": [[op, input], ...], "reduce": [...]}`` of a cell derivation."""
    genotype: dict[str, Any] = {}
    for kind in ("normal", "reduce"):
        kept = set(derivation.edges[kind])
        cell = []
        for node in range(STEPS):
            for j, e in enumerate(node_edges(node)):
                if e in kept:
                    cell.append([net.primitives[derivation.choices[f"{kind}:{e}"]], j])
        genotype[kind] = cell
    return genotype
