"""The lambda sweep: which cost weight to search next, so the front fills in "anytime".

Each lambda of DASS's cost term (Mousavi et al., arXiv 2207.06968) yields one derived
subnet, one point of the front. The listed ``search.dass.lambdas`` go first, in order.
While budget is left, the sweep refines: it proposes a lambda between two neighbours whose
subnets differ (geometric mean; half the upper one next to 0) and one beyond the largest
lambda (twice it, up to 1000 times the largest listed) unless that one already gave the
sparsest subnet the supernet allows,
and takes the proposal with the largest gap ``|cost_a - cost_b| * accuracy`` (beyond the
largest: the distance to the sparsest cost). It stops when every gap is closed: neighbours
with the same subnet, a neighbour that repeated an earlier subnet, or lambdas less than
10% apart.

When a round's sweep is complete and budget is left, the next round starts over from the
listed lambdas (``DassStrategy`` gives it a finer grid and a new supernet seed, so the strategy
stays "anytime"); a round that adds no new subnet ends the search.

Pure functions over plain records (``SweepPoint``), so a resumed search makes the same
proposals from what its study holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SweepPoint", "next_lambda", "next_step"]

MIN_RATIO = 1.1  # neighbours closer than this (upper / lower) are not split again
LAMBDA_CAP = 1000.0  # no lambda beyond this many times the largest listed one


@dataclass(frozen=True)
class SweepPoint:
    """One searched lambda.

    Attributes:
        lam: the cost weight.
        key: the trial key given to its derived subnet.
        digest: the derived spec's digest (and the model's, for cells).
        cost: the derived subnet's cost under the supernet's cost model (dense = 1).
        accuracy: its validation accuracy (None while unknown or when it failed).
        duplicate_of: the key of an earlier point with the same subnet (not trained again).
        round: the sweep round (round r trains its supernets from seed + r).
        retrain_of: the key of the subnet this one retrains with other training values
            (``retrain``, ``probe``); such points take no part in the lambda sweep.
        training: the training values it was retrained with (retrain_of points).
    """

    lam: float
    key: int
    digest: str
    cost: float
    accuracy: float | None = None
    duplicate_of: int | None = None
    round: int = 0
    retrain_of: int | None = None
    training: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepPoint:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _between(low: float, high: float) -> float:
    return high / 2.0 if low <= 0.0 else math.sqrt(low * high)


def next_lambda(listed: Sequence[float], points: Sequence[SweepPoint], *, refine: bool,
                min_cost: float) -> float | None:
    """The next lambda to search, or None when the sweep has nothing left to add.

    Args:
        listed: ``search.dass.lambdas``, searched first in this order.
        points: what has been searched so far.
        refine: propose new lambdas once the listed ones are done.
        min_cost: the cost of the sparsest subnet the supernet can derive.
    """
    done = {p.lam for p in points}
    for lam in listed:
        if float(lam) not in done:
            return float(lam)
    if not refine or not points:
        return None
    accuracy = {p.key: p.accuracy for p in points}

    def acc(p: SweepPoint) -> float:
        value = accuracy.get(p.duplicate_of, p.accuracy) if p.duplicate_of is not None \
            else p.accuracy
        return float(value) if value is not None else 0.0

    ordered = sorted(points, key=lambda p: p.lam)
    proposals: list[tuple[float, float]] = []
    for a, b in zip(ordered, ordered[1:]):
        # A lambda that gave an earlier subnet again closes the gaps next to it: splitting
        # further would only locate where alpha's argmax flips, not find new subnets.
        if a.digest == b.digest or a.duplicate_of is not None or b.duplicate_of is not None:
            continue
        if a.lam > 0 and b.lam / a.lam < MIN_RATIO or b.lam <= 1e-6:
            continue
        proposals.append((abs(a.cost - b.cost) * max(acc(a), acc(b)), _between(a.lam, b.lam)))
    top = ordered[-1]
    cap = LAMBDA_CAP * max([1.0, *[float(v) for v in listed]])
    if top.cost > min_cost + 1e-9 and top.lam < cap:
        proposals.append(((top.cost - min_cost) * acc(top), 2.0 * top.lam if top.lam > 0
                          else 1.0))
    proposals = [p for p in proposals if p[0] > 0 and p[1] not in done]
    if not proposals:
        return None
    return max(proposals, key=lambda p: (p[0], -p[1]))[1]


def next_step(listed: Sequence[float], points: Sequence[SweepPoint], *, refine: bool,
              min_cost: float) -> tuple[int, float] | None:
    """The next (round, lambda) to search, or None when the search has converged.

    Args:
        listed, refine, min_cost: as for ``next_lambda``.
        points: every point searched so far, all rounds.
    """
    swept = [p for p in points if p.retrain_of is None]
    current = max((p.round for p in swept), default=0)
    mine = [p for p in swept if p.round == current]
    lam = next_lambda(listed, mine, refine=refine, min_cost=min_cost)
    if lam is not None:
        return current, lam
    if not refine or not mine or all(p.duplicate_of is not None for p in mine):
        return None
    return current + 1, float(listed[0])
