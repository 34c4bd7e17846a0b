"""The lambda that hits a target cost: DASS's cost weight solved for a chosen density.

DASS (Mousavi et al., arXiv 2207.06968) turns a cost weight lambda into a subnet whose
cost falls as lambda grows; ``search.strategy=dass_tpe`` asks for a subnet at a *target*
cost instead, so it needs the inverse. Each supernet search is expensive, so the inverse is
found from every (lambda, derived cost) pair the run has seen: between two bracketing
lambdas, interpolation in log-lambda (linear next to lambda = 0), kept away from the ends
(a safeguarded regula falsi, which cannot stall on one side); without a bracket, twice the
largest lambda (still too dense) or half the smallest (too sparse). Pure functions over
plain pairs, so a resumed search proposes the same lambdas from what its study holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

__all__ = ["closest_point", "in_range", "lambda_for_target", "sparsity_for_cost"]

# Where between two bracketing lambdas the next one may fall (fractions of the gap): the
# cost is not linear in lambda, and an unguarded secant step can creep along one end.
SAFEGUARD = (0.1, 0.9)
# A lambda this close (relative) to one already searched would search it again.
SAME_LAMBDA = 0.01


def closest_point(target: float,
                  points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """The (lambda, cost) pair whose cost is nearest ``target`` (the smaller lambda on a
    tie); None when there is none."""
    finite = [p for p in points if math.isfinite(p[1])]
    return min(finite, key=lambda p: (abs(p[1] - target), p[0]), default=None)


def _between(lo: float, hi: float, fraction: float) -> float:
    """The point ``fraction`` of the way from ``lo`` to ``hi`` in log-lambda (linear
    from 0, which has no logarithm)."""
    if lo <= 0.0:
        return hi * fraction
    return math.exp(math.log(lo) + fraction * (math.log(hi) - math.log(lo)))


def lambda_for_target(target: float, points: Sequence[tuple[float, float]], *,
                      tolerance: float, start: float = 1.0) -> float | None:
    """The next lambda to search for a subnet of cost ``target``.

    Args:
        target: the wanted cost (dense = 1).
        points: (lambda, derived cost) pairs already searched (any order, NaN ignored).
        tolerance: a cost within this of ``target`` is a hit.
        start: the first lambda when nothing is known yet (> 0).

    Returns:
        The lambda, or None when searching more cannot help: a point is already within
        ``tolerance``, lambda 0 is still sparser than the target, or the next lambda would
        repeat one already searched.
    """
    finite = sorted((lam, cost) for lam, cost in points if math.isfinite(cost))
    if not finite:
        return start
    best = closest_point(target, finite)
    if best is not None and abs(best[1] - target) <= tolerance:
        return None
    dense = [p for p in finite if p[1] > target]  # lambda too small
    sparse = [p for p in finite if p[1] < target]  # lambda too large
    if not sparse:
        largest = max(lam for lam, _ in dense)
        lam = 2.0 * largest if largest > 0 else start
    elif not dense:
        smallest = min(lam for lam, _ in sparse)
        if smallest <= 0.0:
            return None
        lam = smallest / 2.0
    else:
        # The tightest bracket: the largest lambda still too dense, the smallest too sparse.
        lo, c_lo = max(dense)
        hi, c_hi = min(sparse)
        if lo > hi:
            # Not monotone here (supernet noise): search between the two disagreeing ones.
            lo, hi, c_lo, c_hi = hi, lo, c_hi, c_lo
            fraction = 0.5
        else:
            fraction = (c_lo - target) / (c_lo - c_hi)
        lam = _between(lo, hi, min(max(fraction, SAFEGUARD[0]), SAFEGUARD[1]))
    if any(abs(lam - seen) <= SAME_LAMBDA * max(lam, seen) for seen, _ in finite):
        return None
    return lam


def sparsity_for_cost(target: float, cost_of: Callable[[float], float], *, low: float,
                      high: float, tolerance: float = 1e-4, steps: int = 40) -> float:
    """The sparsity in [low, high] whose cost is ``target`` (bisection; cost falls as
    sparsity grows), or the bound nearest it when the range cannot reach it.

    Args:
        target: the wanted cost (dense = 1).
        cost_of: the cost of a sparsity (non-increasing).
        low, high: the space's sparsity range.
        tolerance: a cost this close to ``target`` ends the search.
        steps: bisection steps at most.
    """
    if cost_of(high) >= target:
        return high
    if cost_of(low) <= target:
        return low
    lo, hi = low, high  # cost_of(lo) > target > cost_of(hi)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        cost = cost_of(mid)
        if abs(cost - target) <= tolerance:
            return mid
        lo, hi = (mid, hi) if cost > target else (lo, mid)
    return 0.5 * (lo + hi)


def in_range(sparsity: float, *, low: float, high: float, step: float | None) -> float:
    """``sparsity`` as random search could draw it from the range: on the ``step`` grid
    (whose top may lie below ``high``), rounded to 4 decimals, within [low, high]."""
    if step:
        top = low + math.floor((high - low) / step + 1e-9) * step
        sparsity = min(top, low + round((sparsity - low) / step) * step)
    return min(max(round(sparsity, 4), low), high)
