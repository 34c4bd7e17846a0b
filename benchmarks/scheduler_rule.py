"""How long one MO-ASHA decision takes as a rung fills: the fast sort against the definition.

Every trial that reaches a rung is ranked against all the records of that rung (non-dominated
sorting, then crowding). A 600 s MNIST-1D search with ``search.scheduler=asha`` puts about a
thousand trials on its first rung; with the textbook sort (peel off the points no remaining
point dominates, O(F n^2)) one decision there took seconds, inside the search's budget.
This times ``non_dominated_fronts`` (the library's) against that definition on rungs of
(accuracy, density) records like a search's (densities from a handful of values), repeats
each ``--repeats`` times and prints min/median/max and the ratio of medians.

    python benchmarks/scheduler_rule.py [--sizes 100 300 1000] [--repeats 5]
        [--out outputs/bench/scheduler_rule.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any


def by_definition(points: list[list[float]], directions: list[str]) -> list[list[int]]:
    signs = [-1.0 if d == "max" else 1.0 for d in directions]
    mins = [[s * v for s, v in zip(signs, p)] for p in points]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    left, fronts = list(range(len(mins))), []
    while left:
        front = [i for i in left if not any(dominates(mins[j], mins[i]) for j in left)]
        fronts.append(front)
        left = [i for i in left if i not in front]
    return fronts


def main() -> None:
    from sparsearch.schedulers import non_dominated_fronts

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/scheduler_rule.json"))
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    print(f"{'records':>7} | {'definition s (min/med/max)':>28} | {'fast s (min/med/max)':>26} | "
          "ratio")
    for n in args.sizes:
        rng = random.Random(n)
        points = [[rng.random(), rng.choice([0.05, 0.1, 0.2, 0.3, 0.5, 0.7])] for _ in range(n)]
        times: dict[str, list[float]] = {"definition": [], "fast": []}
        for _ in range(args.repeats):
            for name, sort in (("definition", by_definition), ("fast", non_dominated_fronts)):
                started = time.perf_counter()
                fronts = sort(points, ["max", "min"])
                times[name].append(time.perf_counter() - started)
            if n <= 300:
                assert fronts == by_definition(points, ["max", "min"])
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"records": n, **{k: sorted(v) for k, v in times.items()},
                     "ratio_of_medians": med["definition"] / med["fast"]})
        d, f = sorted(times["definition"]), sorted(times["fast"])
        print(f"{n:>7} | {d[0]:8.4f} {med['definition']:8.4f} {d[-1]:8.4f}   | "
              f"{f[0]:8.5f} {med['fast']:8.5f} {f[-1]:8.5f} | {rows[-1]['ratio_of_medians']:.0f}x")
    load = os.getloadavg()
    print(f"1-min load {load[0]:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "load_1min": load[0]}, indent=1))


if __name__ == "__main__":
    main()
