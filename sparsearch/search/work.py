"""Units of work: what a strategy proposes and a runner executes.

The seam between the two rooms of the search (``DESIGN.md``): a strategy
(``search/strategies.py``) proposes ``Unit``s and consumes ``Finished`` results; a runner
(``runners/``) executes units, in this process or on a cluster, and knows nothing about
which strategy proposed them. A unit is small, picklable data; what every unit of a search
shares (the data, the model options, where to record) travels once as the ``WorkEnv``.

Multi-fidelity seam: a unit that trains reports each epoch through ``Worker.report``,
which returns True when the trial should stop now. Runners build the ``Worker`` and so
decide what a report does: the local runner asks ``Worker.on_report`` (the hook of
``search.scheduler``, installed by ``app.run_one`` as ``Runner.on_report``; none: nothing
stops), the Ray runner forwards each report to Tune, whose scheduler asks the same hook in
the driver (``sparsearch.schedulers._ray``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sparsearch.evaluate import EvalContext
    from sparsearch.search.setup import SearchSetup
    from sparsearch.tracking import Tracker

__all__ = ["Finished", "ReportHook", "Unit", "WorkEnv", "Worker", "absolute_uri", "work_env"]

# (unit key, epoch, metrics at that epoch, metric series so far) -> stop now?
ReportHook = Callable[[int, int, dict[str, float], list[tuple[str, float, int]]], bool]


@dataclass(frozen=True)
class WorkEnv:
    """What every unit of one search needs besides itself (sent once per worker).

    Attributes:
        ctx: data, model options, training defaults, seed, device, threads.
        run_dir: the search's run dir, absolute (shared storage when units run on several
            nodes: trial weights and the DASS warm-up cache are written there).
        tracking_uri: the MLflow URI, absolute for a sqlite file.
        experiment, search_key, parent_run_id: where units record their child runs.
    """

    ctx: EvalContext
    run_dir: str
    tracking_uri: str
    experiment: str
    search_key: str
    parent_run_id: str

    @property
    def path(self) -> Path:
        return Path(self.run_dir)


@dataclass
class Worker:
    """Where a unit runs: its env, its MLflow tracker, its node, its report hook.

    Attributes:
        env: the search's shared env (``ctx.threads`` set for this worker).
        tracker: an open tracker of this process (a runner keeps one per process).
        node_id: the Ray node (None in the local runner).
        on_report: the multi-fidelity hook (module doc); None: never stop.
    """

    env: WorkEnv
    tracker: Tracker
    node_id: str | None = None
    on_report: ReportHook | None = None

    def report(self, key: int, epoch: int, metrics: dict[str, float],
               series: list[tuple[str, float, int]]) -> bool:
        """Reports a trial's epoch; True when the trial should stop (a scheduler said so)."""
        return bool(self.on_report and self.on_report(key, epoch, metrics, series))


class Unit(Protocol):
    """One unit of work. ``key`` names it (the trial key it records under, or -1)."""

    @property
    def key(self) -> int: ...

    def execute(self, worker: Worker) -> Any:
        """Does the work; the value is handed back to the strategy that proposed it."""
        ...


@dataclass(frozen=True)
class Finished:
    """A unit's end, as a runner hands it back to the strategy.

    Attributes:
        unit: the unit the strategy proposed.
        value: what ``unit.execute`` returned (None when ``error`` is set).
        node_id: the node it ran on (None in the local runner).
        error: why the runner could not execute it (e.g. its Ray worker died after
            ``runner.max_failures`` retries); None when it ran.
    """

    unit: Any
    value: Any = None
    node_id: str | None = None
    error: str | None = None


def absolute_uri(uri: str) -> str:
    """A sqlite URI relative to the driver's cwd means nothing on a worker: make it absolute."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri[len('sqlite:///'):]).expanduser().resolve()}"
    return uri


def work_env(setup: SearchSetup, parent_run_id: str) -> WorkEnv:
    """The env of a search's units: paths absolute, so they mean the same on any worker."""
    return WorkEnv(ctx=setup.ctx, run_dir=str(setup.run_dir.resolve()),
                   tracking_uri=absolute_uri(setup.cfg.tracking.uri),
                   experiment=setup.experiment, search_key=setup.search_key,
                   parent_run_id=parent_run_id)
