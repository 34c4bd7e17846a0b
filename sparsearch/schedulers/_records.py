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

from sparsearch import mlflow_keys as keys
from sparsearch.schedulers._catalogue import create_scheduler
from sparsearch.schedulers._rule import RungRecord, SuccessiveHalving
from sparsearch.search.study import trial_key

__all__ = ["RUNGS_ATTR", "open_scheduler", "rungs_of", "save_rung"]

RUNGS_ATTR = keys.RUNGS


def open_scheduler(search: Any, *, max_epochs: int, objectives: Sequence[tuple[str, str]],
                   study: Any) -> SuccessiveHalving:
    """The rule of ``search.scheduler``, holding every decision the study recorded.

    Args:
        search: the ``search`` config (scheduler, min_epochs, eta).
        max_epochs: a trial's full epoch budget (``train.epochs``).
        objectives: the study's (metric, direction) pairs.
        study: the Optuna study (resumed or new).
    """
    rule = create_scheduler(search.scheduler, min_epochs=search.min_epochs,
                            max_epochs=max_epochs, eta=search.eta, objectives=objectives)
    for trial in study.get_trials(deepcopy=False):
        for epoch, record in trial.user_attrs.get(RUNGS_ATTR, {}).items():
            rule.restore(RungRecord(key=trial_key(trial), epoch=int(epoch),
                                    values=tuple(record["values"]),
                                    survived=bool(record["survived"])))
    return rule


def _running_trial_id(study: Any, key: int) -> int:
    """Storage id of the running attempt of the trial with stable key ``key``.

    By key, through the storage: the Ray driver decides for trials whose ``optuna.Trial``
    objects live in Tune's searcher (and cache their attributes), and Optuna has no public
    access to those; an interrupted attempt with the same key is no longer RUNNING.
    """
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial_key(trial) == key:
            return trial._trial_id
    raise KeyError(f"no running trial with key {key}")


def _rungs(study: Any, trial_id: int) -> dict[str, dict[str, Any]]:
    return dict(study._storage.get_trial(trial_id).user_attrs.get(RUNGS_ATTR, {}))


def rungs_of(study: Any, key: int) -> dict[str, dict[str, Any]]:
    """The rung records of the running trial ``key`` (epoch -> values, survived)."""
    return _rungs(study, _running_trial_id(study, key))


def save_rung(study: Any, key: int, record: RungRecord) -> None:
    """Adds ``record`` to the rung records of the running trial ``key``."""
    trial_id = _running_trial_id(study, key)  # once: it lists the running trials
    rungs = _rungs(study, trial_id)
    rungs[str(record.epoch)] = {"values": list(record.values), "survived": record.survived}
    study._storage.set_trial_user_attr(trial_id, RUNGS_ATTR, rungs)
