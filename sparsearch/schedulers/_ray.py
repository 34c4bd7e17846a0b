"""The Ray runner's adapter: a Tune ``TrialScheduler`` that asks the scheduler's hook.

On a Ray worker a trial's epoch reports are forwarded to Tune (``forward_epoch``, the
workers' report hook); ``RungScheduler`` runs in the driver and passes each to the hook of
``search.scheduler`` (``scheduler_hook``, the one the local runner calls in-process), and
answers STOP when it says so. Concurrent Ray trials are thus stopped by exactly the local
runner's decision. A stopped trial's worker is ended by Tune mid-training and cannot record
itself: ``stopped_result`` tells the driver's searcher that Tune stopped it (rather than
that the search was interrupted) and what it measured, so the driver records it.

Tune pickles its scheduler into the experiment state, so the scheduler holds only the
search key; the hook is registered for this process with ``register_hook``.
"""

from __future__ import annotations

import json
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sparsearch.evaluate import TrialResult, pruned_result

__all__ = ["RungScheduler", "forward_epoch", "register_hook", "stopped_result",
           "unregister_hook"]

# Keys of a per-epoch result (a unit's final result has none of them).
EPOCH = "sparsearch.epoch"
RUNG_KEY = "sparsearch.rung_key"
REPORTED = "sparsearch.reported"
SERIES = "sparsearch.series"

_HOOKS: dict[str, Any] = {}
_STOPPED: dict[str, set[str]] = {}


def register_hook(session_key: str, hook: Any) -> None:
    """Makes ``hook`` (``scheduler_hook``; None: nothing stops) the one of this search."""
    _HOOKS[session_key] = hook
    _STOPPED[session_key] = set()


def unregister_hook(session_key: str) -> None:
    _HOOKS.pop(session_key, None)
    _STOPPED.pop(session_key, None)


def forward_epoch(key: int, epoch: int, reported: dict[str, float],
                  series: list[tuple[str, float, int]]) -> bool:
    """A Ray worker's report hook: the epoch goes to Tune; the driver decides (never here)."""
    from ray import tune

    tune.report({EPOCH: epoch, RUNG_KEY: key, REPORTED: json.dumps(reported),
                 SERIES: json.dumps(series)})
    return False


class RungScheduler(FIFOScheduler):
    """Stops a trial when the search's scheduler hook says so (FIFO otherwise).

    Args:
        session_key: the search key its hook was registered under.
    """

    # A trial must not train on past a rung before its decision (TUNE_RESULT_BUFFER_LENGTH
    # > 1 would let it), or it could finish and record itself before it is stopped.
    _supports_buffered_results = False

    def __init__(self, session_key: str) -> None:
        super().__init__()
        self._session_key = session_key

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        hook = _HOOKS.get(self._session_key)
        if hook is None or EPOCH not in result:
            return TrialScheduler.CONTINUE
        series = [tuple(point) for point in json.loads(result[SERIES])]
        if hook(int(result[RUNG_KEY]), int(result[EPOCH]), json.loads(result[REPORTED]),
                series):
            _STOPPED[self._session_key].add(trial.trial_id)
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE


def stopped_result(session_key: str, trial_id: str,
                   result: dict | None) -> tuple[TrialResult, list] | None:
    """(pruned result, metric series) of a Tune trial ``RungScheduler`` stopped, else None.

    Args:
        session_key: the search key.
        trial_id: the Tune trial.
        result: its last result (the epoch it was stopped at).
    """
    if trial_id not in _STOPPED.get(session_key, set()) or not result:
        return None
    series = [tuple(point) for point in json.loads(result[SERIES])]
    return pruned_result(int(result[EPOCH]), json.loads(result[REPORTED])), series
