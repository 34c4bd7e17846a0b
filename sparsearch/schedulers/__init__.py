"""Schedulers: stop weak trials early at rungs (none | asha | hyperband).

A pure multi-objective promotion rule (``SuccessiveHalving``), the hook that puts it on
the report seam of the runners (``scheduler_hook``: the local runner calls it at each epoch
report) and the Ray runner's adapter, a Tune ``TrialScheduler`` that calls the same hook in
the driver (``sparsearch.schedulers._ray``, imported by the Ray runner only: it imports
ray), so both runners stop the same trials.
"""

from __future__ import annotations

from sparsearch.schedulers._catalogue import (
    SCHEDULERS,
    create_scheduler,
    list_schedulers,
    register_scheduler,
)
from sparsearch.schedulers._hook import scheduler_hook
from sparsearch.schedulers._records import RUNGS_ATTR, open_scheduler, save_rung
from sparsearch.schedulers._rule import (
    RUNG_METRICS,
    RungRecord,
    SuccessiveHalving,
    crowding_distance,
    mo_order,
    non_dominated_fronts,
    rung_epochs,
    survives,
)

__all__ = [
    "RUNGS_ATTR",
    "RUNG_METRICS",
    "RungRecord",
    "SCHEDULERS",
    "SuccessiveHalving",
    "create_scheduler",
    "crowding_distance",
    "list_schedulers",
    "mo_order",
    "non_dominated_fronts",
    "open_scheduler",
    "register_scheduler",
    "rung_epochs",
    "save_rung",
    "scheduler_hook",
    "survives",
]
