"""Schedulers: stop weak trials early at rungs (none | asha | hyperband).

A pure multi-objective promotion rule (``SuccessiveHalving``) plus one thin adapter per
runner: the local runner consults it at each epoch report, the Ray runner through a Tune
``TrialScheduler`` built on the same rule, so both stop the same trials.
"""

from __future__ import annotations

from sparsearch.schedulers._catalogue import create_scheduler, list_schedulers, register_scheduler
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
    "RUNG_METRICS",
    "RungRecord",
    "SuccessiveHalving",
    "create_scheduler",
    "crowding_distance",
    "list_schedulers",
    "mo_order",
    "non_dominated_fronts",
    "register_scheduler",
    "rung_epochs",
    "survives",
]
