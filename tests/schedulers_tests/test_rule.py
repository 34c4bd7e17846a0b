"""The multi-objective promotion rule on hand-made rung records."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsearch.schedulers import (
    create_scheduler,
    crowding_distance,
    list_schedulers,
    mo_order,
    non_dominated_fronts,
    rung_epochs,
    survives,
)

ACC_DENSITY = [("accuracy", "max"), ("density", "min")]
DIRS = ["max", "min"]


def test_fronts_follow_dominance():
    # (accuracy, density): 0 and 1 trade off; 2 is dominated by 0; 3 by everything.
    points = [[0.9, 0.5], [0.7, 0.2], [0.8, 0.6], [0.5, 0.9]]
    assert non_dominated_fronts(points, DIRS) == [[0, 1], [2], [3]]


def _fronts_by_definition(points, directions):
    # Peel off the points no remaining point dominates (the textbook O(F n^2) sort).
    signs = [-1.0 if d == "max" else 1.0 for d in directions]
    mins = [[s * v for s, v in zip(signs, p)] for p in points]

    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    left, fronts = list(range(len(mins))), []
    while left:
        front = [i for i in left if not any(dominates(mins[j], mins[i]) for j in left)]
        fronts.append(front)
        left = [i for i in left if i not in front]
    return fronts


# Few distinct values, so ties and duplicates are common; NaN for a diverged loss.
VALUE = st.one_of(st.integers(0, 4).map(float), st.floats(0, 1), st.just(math.nan))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4).flatmap(lambda m: st.tuples(
    st.lists(st.lists(VALUE, min_size=m, max_size=m), max_size=40),
    st.lists(st.sampled_from(["max", "min"]), min_size=m, max_size=m))))
def test_fast_fronts_equal_the_definition(case):
    points, directions = case
    assert non_dominated_fronts(points, directions) == _fronts_by_definition(points, directions)


def test_a_rung_of_thousands_is_sorted_by_the_fast_path():
    # 3000 records in 2 objectives: the O(n log n) path gives what the definition gives on
    # a sample small enough for it, and the large sort holds every index once.
    points = [[(i * 7919 % 1000) / 1000, (i * 104729 % 997) / 997] for i in range(3000)]
    fronts = non_dominated_fronts(points, DIRS)
    assert sorted(i for f in fronts for i in f) == list(range(3000))
    assert non_dominated_fronts(points[:300], DIRS) == _fronts_by_definition(points[:300], DIRS)


LINE = [[0.9, 0.9], [0.7, 0.5], [0.69, 0.49], [0.68, 0.48], [0.5, 0.1]]


def test_crowding_prefers_isolated_points():
    # One front; point 2 sits between two close neighbours, so it is the most crowded.
    crowd = crowding_distance(LINE, [0, 1, 2, 3, 4])
    assert math.isinf(crowd[0]) and math.isinf(crowd[4])
    assert crowd[2] < crowd[1] and crowd[2] < crowd[3]


def test_order_breaks_ties_by_crowding_then_first_objective():
    order = mo_order([*LINE, [0.4, 0.95]], DIRS, keys=[0, 1, 2, 3, 4, 5])
    # Boundary points (infinite crowding) by accuracy, the crowded point 2 last of the
    # first front, then the dominated trial.
    assert order[:2] == [0, 4] and order[4:] == [2, 5]


def test_survives_keeps_top_third():
    rung = {0: (0.9, 0.5), 1: (0.6, 0.5), 2: (0.5, 0.5)}
    assert survives(rung, 0, directions=DIRS, eta=3)
    assert not survives(rung, 1, directions=DIRS, eta=3)
    # Four records: ceil(4/3) = 2 continue.
    rung[3] = (0.4, 0.5)
    assert survives(rung, 1, directions=DIRS, eta=3)
    assert not survives(rung, 2, directions=DIRS, eta=3)


def test_sparse_but_less_accurate_trial_survives_a_dense_accurate_one():
    # Single-objective ASHA would stop the sparse subnet; MO-ASHA keeps both trade-offs.
    rung = {0: (0.95, 1.0), 1: (0.80, 0.1), 2: (0.90, 1.0), 3: (0.85, 1.0)}
    assert survives(rung, 1, directions=DIRS, eta=2)
    assert not survives(rung, 2, directions=DIRS, eta=2)


def test_rungs_are_geometric_below_the_budget():
    assert rung_epochs(first=1, max_epochs=10, eta=3) == [1, 3, 9]
    assert rung_epochs(first=2, max_epochs=6, eta=2) == [2, 4]
    assert rung_epochs(first=5, max_epochs=5, eta=3) == []


@pytest.mark.parametrize("name", list_schedulers())
def test_catalogue_builds_every_scheduler(name):
    rule = create_scheduler(name, min_epochs=1, max_epochs=9, eta=3, objectives=ACC_DENSITY)
    rungs = [r for b in rule.brackets for r in b]
    assert all(1 <= r < 9 for r in rungs)
    assert (name == "none") == (not rule.brackets)


def test_hyperband_brackets_start_later_and_split_trials_by_key():
    rule = create_scheduler("hyperband", min_epochs=1, max_epochs=9, eta=3,
                            objectives=ACC_DENSITY)
    assert rule.brackets == [[1, 3], [3]]
    assert rule.rungs_of(0) == [1, 3] and rule.rungs_of(1) == [3]


def test_unknown_scheduler_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"search.scheduler must be one of \['asha', "):
        create_scheduler("median", min_epochs=1, max_epochs=9, eta=3, objectives=ACC_DENSITY)


def test_decide_is_asynchronous_and_idempotent():
    rule = create_scheduler("asha", min_epochs=1, max_epochs=9, eta=3, objectives=ACC_DENSITY)
    # Not a rung: no decision.
    assert rule.decide(0, 2, {"accuracy": 0.5, "density": 0.5}) is None
    first = rule.decide(0, 1, {"accuracy": 0.5, "density": 0.5})
    assert first.survived  # first at the rung always continues
    assert not rule.decide(1, 1, {"accuracy": 0.4, "density": 0.5}).survived
    # A rerun of trial 1 (resume) gets the recorded decision, whatever it measures now.
    again = rule.decide(1, 1, {"accuracy": 0.99, "density": 0.1})
    assert not again.survived and again.values == (0.4, 0.5)
    assert len(rule.records[(0, 1)]) == 2


def test_latency_is_not_ranked_at_a_rung():
    rule = create_scheduler("asha", min_epochs=1, max_epochs=9, eta=3, objectives=[
        ("accuracy", "max"), ("latency_ms", "min")])
    record = rule.decide(0, 1, {"accuracy": 0.5})
    assert record.values == (0.5,)
