"""Pareto bookkeeping: the non-dominated set of trials and its hypervolume.

Pure functions over plain lists of points; ``directions`` holds "max" or "min" per
objective. Hypervolume is computed exactly by slicing along one objective at a time
(HSO, While et al. 2006), which is fast for the few objectives and hundreds of points a
search produces.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["hypervolume", "pareto_front", "to_minimisation"]

Point = Sequence[float]


def _check_directions(directions: Sequence[str]) -> None:
    for d in directions:
        if d not in ("max", "min"):
            raise ValueError(f"direction must be 'max' or 'min', got {d!r}")


def to_minimisation(points: Sequence[Point], directions: Sequence[str]) -> list[list[float]]:
    """Negates the maximised objectives so that every objective is minimised."""
    _check_directions(directions)
    return [[-float(v) if d == "max" else float(v) for v, d in zip(p, directions)]
            for p in points]


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(points: Sequence[Point], directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points, in input order.

    Of several identical points only the first is kept, so every point of the front is a
    distinct trade-off.

    Args:
        points: one tuple of objective values per trial.
        directions: "max" or "min" per objective.
    """
    mins = to_minimisation(points, directions)
    front: list[int] = []
    for i, p in enumerate(mins):
        dominated = any(_dominates(q, p) for j, q in enumerate(mins) if j != i)
        duplicate = any(mins[j] == p for j in front)
        if not dominated and not duplicate:
            front.append(i)
    return front


def _hv_min(points: list[list[float]], reference: list[float]) -> float:
    """Hypervolume of minimisation points below ``reference`` (all inside the box)."""
    if not points:
        return 0.0
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in points)
    # Slice along the first objective: between consecutive values the dominated region is
    # the (d-1)-dimensional hypervolume of the points with first value <= the slice.
    pts = sorted(points, key=lambda p: p[0])
    volume = 0.0
    for k, p in enumerate(pts):
        upper = pts[k + 1][0] if k + 1 < len(pts) else reference[0]
        width = upper - p[0]
        if width > 0:
            volume += width * _hv_min([q[1:] for q in pts[:k + 1]], reference[1:])
    return volume


def hypervolume(points: Sequence[Point], reference: Point, directions: Sequence[str]) -> float:
    """Volume dominated by ``points`` and bounded by ``reference``.

    Points that do not strictly improve on the reference in every objective add nothing.

    Args:
        points: objective values per trial.
        reference: the bounding point, the worst value of each objective that counts.
        directions: "max" or "min" per objective.
    """
    if len(reference) != len(directions):
        raise ValueError("reference and directions need one value per objective")
    mins = to_minimisation(points, directions)
    ref = to_minimisation([reference], directions)[0]
    inside = [p for p in mins if all(v < r for v, r in zip(p, ref))]
    front = [inside[i] for i in pareto_front(inside, ["min"] * len(ref))]
    return _hv_min(front, ref)
