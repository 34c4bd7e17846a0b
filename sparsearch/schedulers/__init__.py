"""Schedulers: stop weak trials early at rungs (none | asha | hyperband).

A pure multi-objective promotion rule (``SuccessiveHalving``) plus one thin adapter per
runner: the local runner consults it at each epoch report, the Ray runner through a Tune
``TrialScheduler`` built on the same rule, so both stop the same trials.
"""

from __future__ import annotations

from sparsearch.schedulers._catalogue import create_scheduler, list_schedulers, register_scheduler
from sparsearch.schedulers._local import epoch_reporter
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
    "SuccessiveHalving",
    "create_scheduler",
    "crowding_distance",
    "epoch_reporter",
    "list_schedulers",
    "mo_order",
    "non_dominated_fronts",
    "open_scheduler",
    "register_scheduler",
    "rung_epochs",
    "save_rung",
    "survives",
]
