from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsearch.pareto import hypervolume, pareto_front


def test_front_of_accuracy_vs_density():
    points = [(0.9, 0.5), (0.8, 0.2), (0.85, 0.6), (0.95, 0.9), (0.8, 0.2)]
    # (0.85, 0.6) is dominated by (0.9, 0.5); the repeated (0.8, 0.2) is kept once.
    assert pareto_front(points, ["max", "min"]) == [0, 1, 3]


def test_hypervolume_by_hand():
    points = [(0.9, 0.5), (0.8, 0.2), (0.95, 0.9)]
    # Slices of the dominated area below reference (0, 1): 0.05*0.1 + 0.1*0.5 + 0.8*0.8.
    assert hypervolume(points, (0.0, 1.0), ["max", "min"]) == pytest.approx(0.695)


def test_points_outside_the_reference_add_nothing():
    assert hypervolume([(0.9, 1.5)], (0.0, 1.0), ["max", "min"]) == 0.0
    assert hypervolume([], (0.0, 1.0), ["max", "min"]) == 0.0


def test_bad_direction():
    with pytest.raises(ValueError, match="direction"):
        pareto_front([(1, 2)], ["max", "up"])


points_3d = st.lists(st.tuples(*[st.floats(0.0, 1.0, allow_nan=False)] * 3), min_size=1,
                     max_size=12)


@settings(max_examples=60, deadline=None)
@given(points_3d)
def test_hypervolume_matches_optuna(points):
    from optuna._hypervolume import compute_hypervolume

    ours = hypervolume(points, (1.0, 1.0, 1.0), ["min", "min", "min"])
    inside = np.array([p for p in points if all(v < 1.0 for v in p)] or [[1.0, 1.0, 1.0]])
    theirs = compute_hypervolume(inside, np.ones(3))
    assert ours == pytest.approx(theirs, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(points_3d, st.tuples(*[st.floats(0.0, 1.0, allow_nan=False)] * 3))
def test_adding_a_point_never_shrinks_the_volume(points, extra):
    before = hypervolume(points, (1.0, 1.0, 1.0), ["min", "min", "min"])
    after = hypervolume([*points, extra], (1.0, 1.0, 1.0), ["min", "min", "min"])
    assert after >= before - 1e-12


@settings(max_examples=60, deadline=None)
@given(points_3d)
def test_front_members_are_not_dominated(points):
    front = pareto_front(points, ["max", "min", "min"])
    assert front
    for i in front:
        a = points[i]
        for b in points:
            better_or_equal = b[0] >= a[0] and b[1] <= a[1] and b[2] <= a[2]
            assert not (better_or_equal and tuple(b) != tuple(a))
