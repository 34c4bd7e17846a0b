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

__all__ = ["RUNGS_ATTR", "open_scheduler", "rungs_of", "save_rung"]

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


def rungs_of(study: Any, number: int) -> dict[str, dict[str, Any]]:
    """The rung records of trial ``number`` as stored now (epoch -> values, survived).

    Read by number, through the storage: the Ray driver decides for trials whose
    ``optuna.Trial`` objects live in Tune's searcher (and cache their attributes), and
    Optuna has no public access to those.
    """
    storage = study._storage
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return dict(storage.get_trial(trial_id).user_attrs.get(RUNGS_ATTR, {}))


def save_rung(study: Any, number: int, record: RungRecord) -> None:
    """Adds ``record`` to the rung records of trial ``number`` of ``study``."""
    storage = study._storage
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    rungs = rungs_of(study, number)
    rungs[str(record.epoch)] = {"values": list(record.values), "survived": record.survived}
    storage.set_trial_user_attr(trial_id, RUNGS_ATTR, rungs)
