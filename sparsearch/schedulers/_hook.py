"""The scheduler's hook for the report seam (``search/work.py``), the same under any runner.

The local runner calls it in-process at each epoch report; the Ray runner calls it in the
driver from its Tune scheduler (``_ray``). Either way the rule decides and the decision is
written to the trial's rung records before training goes on, so a search killed after it
still knows it.
"""

from __future__ import annotations

from typing import Any

from sparsearch.schedulers._records import open_scheduler, save_rung

__all__ = ["scheduler_hook"]


def scheduler_hook(search: Any, *, max_epochs: int, objectives: list[tuple[str, str]],
                   study: Any) -> Any:
    """``hook(key, epoch, metrics, series) -> stop?`` of ``search.scheduler``, or None.

    None for a scheduler without rungs (``none``): no report can stop a trial, so runners
    skip the reports' cost.

    Args:
        search: the ``search`` config (scheduler, min_epochs, eta).
        max_epochs: a trial's full epoch budget (``train.epochs``).
        objectives: the study's (metric, direction) pairs.
        study: the Optuna study, whose rung records the rule starts from and extends.
    """
    rule = open_scheduler(search, max_epochs=max_epochs, objectives=objectives, study=study)
    if not rule.brackets:
        return None

    def hook(key: int, epoch: int, metrics: dict[str, float], series: Any) -> bool:
        record = rule.decide(key, epoch, metrics)
        if record is None:
            return False
        save_rung(study, key, record)
        return not record.survived

    return hook
