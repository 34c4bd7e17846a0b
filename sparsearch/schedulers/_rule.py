"""The promotion rule of multi-objective asynchronous successive halving (MO-ASHA).

ASHA (Li et al. 2020, arXiv:1810.05934) stops a trial when it reaches a rung (an epoch
``min_epochs * eta**k``) and is not among the top ``1/eta`` of the trials that reached that
rung so far. sparsearch's studies are multi-objective, so "top" is the MO-ASHA order
(Schmucker et al. 2021, arXiv:2106.12639): non-dominated sorting of the rung's objective
vectors, ties within a front broken by crowding distance (NSGA-II, Deb et al. 2002), the
remaining ties by the first objective and then by trial key, so the order is total and the
same decision comes out under any runner. Hyperband (Li et al. 2018) runs several such
brackets, each with a later first rung; a trial's bracket follows from its key.

Everything here is a pure function of the records, or a small class holding them; the
runner adapters (``_local``, ``_ray``) feed it and persist what it decided.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sparsearch.pareto import to_minimisation

__all__ = [
    "RUNG_METRICS",
    "RungRecord",
    "SuccessiveHalving",
    "crowding_distance",
    "mo_order",
    "non_dominated_fronts",
    "rung_epochs",
    "survives",
]

# Objectives known at a rung: accuracy and loss are measured at that epoch; density, nnz and
# flops follow from the spec's final masks. latency_ms and train_s exist only at the end, so
# a rung ranks on the objectives it has (the same ones for every trial of the study).
RUNG_METRICS = ("accuracy", "loss", "density", "nnz", "flops")


def non_dominated_fronts(points: Sequence[Sequence[float]],
                         directions: Sequence[str]) -> list[list[int]]:
    """Indices of ``points`` grouped into successive non-dominated fronts, best first.

    Each front lists its indices in increasing order. A rung of a long search holds
    thousands of records and is sorted at every decision, so this is fast: two finite
    objectives in O(n log n) (``_fronts_2d``), otherwise Deb's fast non-dominated sort on a
    numpy dominance matrix (a NaN neither dominates nor is dominated).
    """
    mins = to_minimisation(points, directions)
    if not mins:
        return []
    if len(mins[0]) == 2 and all(math.isfinite(v) for p in mins for v in p):
        return _fronts_2d(mins)
    return _fronts_deb(mins)


def _fronts_2d(mins: list[list[float]]) -> list[list[int]]:
    # In lexicographic order a point can only be dominated by points before it, and a
    # front's members, in the order they joined it, have a falling second objective: the
    # last one added decides whether the front dominates the point. Fronts that dominate a
    # point are a prefix (a member of front k is dominated by one of front k-1, which came
    # earlier), so the point's front is found by bisection.
    fronts: list[list[int]] = []
    lasts: list[list[float]] = []
    for i in sorted(range(len(mins)), key=lambda i: (mins[i][0], mins[i][1])):
        f1, f2 = mins[i]
        lo, hi = 0, len(fronts)
        while lo < hi:
            mid = (lo + hi) // 2
            q1, q2 = lasts[mid]
            if q2 < f2 or (q2 == f2 and q1 < f1):
                lo = mid + 1
            else:
                hi = mid
        if lo == len(fronts):
            fronts.append([])
            lasts.append(mins[i])
        fronts[lo].append(i)
        lasts[lo] = mins[i]
    return [sorted(front) for front in fronts]


def _fronts_deb(mins: list[list[float]]) -> list[list[int]]:
    import numpy as np

    a = np.asarray(mins, dtype=float)
    # dominates[i, j]: i is no worse in every objective and better in one.
    dominates = (np.all(a[:, None, :] <= a[None, :, :], axis=2)
                 & np.any(a[:, None, :] < a[None, :, :], axis=2))
    count = dominates.sum(axis=0)
    left = np.ones(len(a), dtype=bool)
    fronts = []
    while left.any():
        front = np.flatnonzero(left & (count == 0))
        fronts.append(front.tolist())
        left[front] = False
        count = count - dominates[front].sum(axis=0)
    return fronts


def crowding_distance(points: Sequence[Sequence[float]], front: Sequence[int]) -> dict[int, float]:
    """NSGA-II crowding distance of each index of ``front``: boundary points are infinite.

    Each objective adds the normalised gap between a point's two neighbours along it, so
    points in sparse regions of the trade-off score high and are kept first.
    """
    distance = {i: 0.0 for i in front}
    if len(front) <= 2:
        return {i: math.inf for i in front}
    for m in range(len(points[front[0]])):
        ordered = sorted(front, key=lambda i: points[i][m])
        span = points[ordered[-1]][m] - points[ordered[0]][m]
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        if span <= 0:
            continue
        for lo, mid, hi in zip(ordered, ordered[1:], ordered[2:]):
            distance[mid] += (points[hi][m] - points[lo][m]) / span
    return distance


def mo_order(points: Sequence[Sequence[float]], directions: Sequence[str], *,
             keys: Sequence[int]) -> list[int]:
    """Indices of ``points`` best first: by front, then crowding, then objective 1, then key."""
    first_sign = -1.0 if directions[0] == "max" else 1.0
    order: list[int] = []
    for front in non_dominated_fronts(points, directions):
        crowd = crowding_distance(points, front)
        order += sorted(front, key=lambda i: (-crowd[i], first_sign * points[i][0], keys[i]))
    return order


def survives(rung: Mapping[int, Sequence[float]], key: int, *, directions: Sequence[str],
             eta: int) -> bool:
    """Whether trial ``key`` continues past a rung whose records (key -> values) include it.

    It continues when it ranks among the best ``ceil(n / eta)`` of the ``n`` trials that
    reached the rung so far (the first to arrive always continues), which is the cut Ray
    Tune's single-objective ASHA makes with its ``1 - 1/eta`` percentile.
    """
    keys = sorted(rung)
    order = mo_order([list(rung[k]) for k in keys], directions, keys=keys)
    best = {keys[i] for i in order[:math.ceil(len(keys) / eta)]}
    return key in best


def rung_epochs(*, first: int, max_epochs: int, eta: int) -> list[int]:
    """Rungs ``first * eta**k`` below ``max_epochs`` (the last epoch is no decision)."""
    rungs = []
    epoch = first
    while epoch < max_epochs:
        rungs.append(epoch)
        epoch *= eta
    return rungs


@dataclass(frozen=True)
class RungRecord:
    """One trial at one rung: what it measured and what was decided."""

    key: int
    epoch: int
    values: tuple[float, ...]
    survived: bool


class SuccessiveHalving:
    """Asynchronous successive halving over one or more brackets (one: ASHA; more: Hyperband).

    Args:
        brackets: the rung epochs of each bracket; a trial's bracket is ``key % len``.
        eta: keep the top ``1/eta`` at each rung (>= 2).
        objectives: the study's (metric, direction) pairs; those in ``RUNG_METRICS`` rank.
    """

    def __init__(self, brackets: list[list[int]], *, eta: int,
                 objectives: Sequence[tuple[str, str]]) -> None:
        self.brackets = brackets
        self.eta = eta
        self.ranked = [(m, d) for m, d in objectives if m in RUNG_METRICS]
        self.records: dict[tuple[int, int], dict[int, RungRecord]] = {}

    def bracket_of(self, key: int) -> int:
        return key % len(self.brackets) if self.brackets else 0

    def rungs_of(self, key: int) -> list[int]:
        return self.brackets[self.bracket_of(key)] if self.brackets else []

    def restore(self, record: RungRecord) -> None:
        """Adds a decision made earlier (a resumed search keeps its rungs)."""
        self.records.setdefault((self.bracket_of(record.key), record.epoch), {})[
            record.key] = record

    def decide(self, key: int, epoch: int, metrics: dict[str, float]) -> RungRecord | None:
        """Records trial ``key`` at ``epoch``; None when ``epoch`` is not one of its rungs.

        A trial decided at this rung before (a rerun of an interrupted trial) gets the same
        decision back, so a resume never promotes or counts a trial twice.
        """
        if epoch not in self.rungs_of(key):
            return None
        rung = self.records.setdefault((self.bracket_of(key), epoch), {})
        if key in rung:
            return rung[key]
        values = tuple(float(metrics[m]) for m, _ in self.ranked)
        points = {k: r.values for k, r in rung.items()}
        points[key] = values
        record = RungRecord(key=key, epoch=epoch, values=values, survived=survives(
            points, key, directions=[d for _, d in self.ranked], eta=self.eta))
        rung[key] = record
        return record
