"""The Ray runner's adapter: a Tune ``TrialScheduler`` that asks the same promotion rule.

Each trainable reports after every epoch (``epoch_result``); ``RungScheduler`` runs in the
driver, feeds rung epochs to the rule and answers STOP for a trial that lost there, so
concurrent Ray trials are stopped by exactly the local runner's decision. A stopped trial's
worker is ended by Tune mid-training and cannot record itself: ``stopped_result`` tells the
driver's searcher that it was stopped (rather than interrupted) and what it measured, so
the driver records it as the local runner would.

Tune pickles its scheduler into the experiment state, so the scheduler holds only the
search key; the rule and the study it writes to are registered for this process with
``register_rule`` (a restored experiment finds the rule rebuilt from the study).
"""

from __future__ import annotations

import json
import math
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sparsearch.evaluate import TrialResult, pruned_result
from sparsearch.schedulers._records import rungs_of, save_rung
from sparsearch.schedulers._rule import SuccessiveHalving

__all__ = ["RungScheduler", "epoch_result", "register_rule", "stopped_result", "unregister_rule"]

# Keys of a per-epoch result (the final result of a trial has none of them).
EPOCH = "sparsearch.epoch"
RUNG_KEY = "sparsearch.rung_key"
REPORTED = "sparsearch.reported"
SERIES = "sparsearch.series"

_RULES: dict[str, tuple[SuccessiveHalving, Any]] = {}


def register_rule(session_key: str, rule: SuccessiveHalving, study: Any) -> None:
    """Makes ``rule`` (writing its decisions to ``study``) the one of this search's scheduler."""
    _RULES[session_key] = (rule, study)


def unregister_rule(session_key: str) -> None:
    _RULES.pop(session_key, None)


def epoch_result(*, key: int, epoch: int, reported: dict[str, float],
                 series: list[tuple[str, float, int]], objectives: tuple[str, ...]) -> dict:
    """What a trainable passes to ``tune.report`` after an epoch.

    Tune checks every result for the searcher's metrics, so each objective is present (NaN
    where it is known only at the end).
    """
    return {**{m: float(reported.get(m, math.nan)) for m in objectives},
            EPOCH: epoch, RUNG_KEY: key,
            REPORTED: json.dumps(reported), SERIES: json.dumps(series)}


class RungScheduler(FIFOScheduler):
    """Stops a trial at a rung when the search's promotion rule says so (FIFO otherwise).

    Args:
        session_key: the search key its rule was registered under.
    """

    # A trial must not train on past a rung before its decision (TUNE_RESULT_BUFFER_LENGTH
    # > 1 would let it), or it could finish and record itself before it is stopped.
    _supports_buffered_results = False

    def __init__(self, session_key: str) -> None:
        super().__init__()
        self._session_key = session_key

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if EPOCH not in result:
            return TrialScheduler.CONTINUE
        rule, study = _RULES[self._session_key]
        key = int(result[RUNG_KEY])
        record = rule.decide(key, int(result[EPOCH]), json.loads(result[REPORTED]))
        if record is None:
            return TrialScheduler.CONTINUE
        save_rung(study, key, record)
        return TrialScheduler.CONTINUE if record.survived else TrialScheduler.STOP


def stopped_result(study: Any, key: int,
                   result: dict | None) -> tuple[TrialResult, list] | None:
    """(pruned result, metric series) when ``result`` is where the rule stopped trial ``key``.

    None for anything else (a last result that is not a lost rung: the search was
    interrupted, and the trial runs again on resume).

    Args:
        study: the Optuna study (``RungScheduler`` wrote the trial's rung records there).
        key: the trial's stable key (still RUNNING in the study).
        result: Tune's last result of the trial.
    """
    if not result or EPOCH not in result:
        return None
    epoch = int(result[EPOCH])
    record = rungs_of(study, key).get(str(epoch))
    if record is None or record["survived"]:
        return None
    series = [tuple(point) for point in json.loads(result[SERIES])]
    return pruned_result(epoch, json.loads(result[REPORTED])), series
