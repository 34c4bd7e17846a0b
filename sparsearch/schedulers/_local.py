"""The local runner's adapter: the rule consulted in-process at each epoch report."""

from __future__ import annotations

from typing import Any

from sparsearch.schedulers._records import save_rung
from sparsearch.schedulers._rule import SuccessiveHalving

__all__ = ["epoch_reporter"]


def epoch_reporter(rule: SuccessiveHalving, *, study: Any, key: int) -> Any:
    """``report(epoch, metrics, series) -> stop?`` for ``run_trial``; None when nothing can stop.

    Each decision is written to the trial's rung records before training goes on, so a
    search killed after it still knows it.
    """
    if not rule.rungs_of(key):
        return None

    def report(epoch: int, metrics: dict[str, float], series: Any) -> bool:
        record = rule.decide(key, epoch, metrics)
        if record is None:
            return False
        save_rung(study, key, record)
        return not record.survived

    return report
