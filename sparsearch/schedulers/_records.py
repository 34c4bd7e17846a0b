"""Rung records in the Optuna study, so a resumed search keeps its rungs.

Optuna's pruners and ``Trial.report`` refuse multi-objective studies, so each trial keeps
its rung decisions as a user attribute (``sparsearch.rungs``: epoch -> values, survived).
A resumed search rebuilds the rule from every trial's records, stale attempts included:
the rerun of an interrupted trial then gets its recorded decision back instead of a second
one. Both runner adapters write through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sparsearch.schedulers._catalogue import create_scheduler
from sparsearch.schedulers._rule import RungRecord, SuccessiveHalving

__all__ = ["RUNGS_ATTR", "open_scheduler", "save_rung"]

RUNGS_ATTR = "sparsearch.rungs"


def open_scheduler(search: Any, *, max_epochs: int, objectives: Sequence[tuple[str, str]],
                   study: Any, key_of: Any) -> SuccessiveHalving:
    """The rule of ``search.scheduler``, holding every decision the study recorded.

    Args:
        search: the ``search`` config (scheduler, min_epochs, eta).
        max_epochs: a trial's full epoch budget (``train.epochs``).
        objectives: the study's (metric, direction) pairs.
        study: the Optuna study (resumed or new).
        key_of: a trial's stable key (``sparsearch.search.study.trial_key``).
    """
    rule = create_scheduler(search.scheduler, min_epochs=search.min_epochs,
                            max_epochs=max_epochs, eta=search.eta, objectives=objectives)
    for trial in study.get_trials(deepcopy=False):
        for epoch, record in trial.user_attrs.get(RUNGS_ATTR, {}).items():
            rule.restore(RungRecord(key=key_of(trial), epoch=int(epoch),
                                    values=tuple(record["values"]),
                                    survived=bool(record["survived"])))
    return rule


def save_rung(trial: Any, record: RungRecord) -> None:
    """Adds ``record`` to the rung records of the running Optuna ``trial``."""
    rungs = dict(trial.user_attrs.get(RUNGS_ATTR, {}))
    rungs[str(record.epoch)] = {"values": list(record.values), "survived": record.survived}
    trial.set_user_attr(RUNGS_ATTR, rungs)
