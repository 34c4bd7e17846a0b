"""Runners: where units of work execute. Same inputs, same outputs, same MLflow records.

A runner (``Runner``) drives one strategy (``search/strategies.py``): it asks the strategy
for units while it has free slots, executes them (``search/work.py``) and hands each
result back, until the strategy proposes nothing with nothing in flight. It never asks
which strategy it drives. A new runner is one module with a ``Runner`` subclass and one
``RUNNERS`` line here (registered lazily: ray is imported only when asked for).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparsearch.catalogue import Catalogue

if TYPE_CHECKING:
    from sparsearch.search.setup import SearchSetup
    from sparsearch.search.strategies import Strategy
    from sparsearch.search.work import ReportHook
    from sparsearch.tracking import Tracker

__all__ = ["RUNNERS", "Runner"]


class Runner:
    """Executes a strategy's units until it is finished.

    Args:
        setup: the validated search.
        tracker: the driver's MLflow tracker.
        parent_run_id: the search's parent run (units record their child runs under it).

    Attributes:
        on_report: the multi-fidelity hook the runner gives the workers it makes
            (``search/work.py``); a scheduler sets it, None: trials are never stopped.
    """

    on_report: ReportHook | None = None

    def __init__(self, setup: SearchSetup, *, tracker: Tracker, parent_run_id: str) -> None:
        self.setup = setup
        self.tracker = tracker
        self.parent_run_id = parent_run_id

    def run(self, strategy: Strategy) -> None:
        raise NotImplementedError


RUNNERS: Catalogue[type[Runner]] = Catalogue("runner", field="runner.kind")
RUNNERS.register_lazy("local", "sparsearch.runners.local:LocalRunner")
RUNNERS.register_lazy("ray", "sparsearch.runners.ray:RayRunner")
