"""``StrategySearcher``: Ray Tune's searcher over any sparsearch strategy.

Tune's ``Searcher`` has the strategy contract's shape (``suggest`` a trial, be told when
it completes), so the Ray runner hands Tune one searcher that asks the strategy for its
next unit (``propose``) and hands each Tune trial's result back (``consume``). A Tune trial
is one unit of work: an Optuna trial, a DASS warm-up, a lambda's supernet search.

Tune pickles the searcher into its experiment state and ``Tuner.restore`` unpickles it, so
what belongs to this process (the strategy, its units in flight, the budget of this
invocation) lives in a ``RaySession`` looked up by the search key, never pickled. The
study, not Tune's state, is the record of the search: ``save``/``restore`` keep nothing.
"""

from __future__ import annotations

import base64
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune.search import Searcher

from sparsearch import mlflow_keys as keys
from sparsearch.schedulers._ray import stopped_result
from sparsearch.search.trial import record_stopped_trial
from sparsearch.search.work import Finished

if TYPE_CHECKING:
    from sparsearch.search.strategies import Strategy

__all__ = ["KEY", "STATUS", "UNIT", "RaySession", "StrategySearcher", "decode", "encode"]

# Keys of a Tune trial's config (the unit) and of its result.
KEY = "sparsearch.key"
UNIT = "sparsearch.unit"
STATUS = "sparsearch.status"  # "done" | "error": the trainable always reports one
ERROR = "sparsearch.error"
VALUE = "sparsearch.value"
NODE_ID = keys.NODE_ID


def encode(value: Any) -> str:
    """A unit's value as a Tune result field (results must be plain values)."""
    return base64.b64encode(pickle.dumps(value)).decode()


def decode(text: str) -> Any:
    return pickle.loads(base64.b64decode(text))


@dataclass
class RaySession:
    """This invocation of the Ray runner: its strategy, concurrency and session file."""

    strategy: Strategy
    max_concurrent: int
    max_failures: int
    session_file: Path
    experiment_path: str
    in_flight: dict[str, Any] = field(default_factory=dict)
    finished: bool = False

    def write_state(self, *, finished: bool) -> None:
        self.session_file.write_text(json.dumps(
            {"experiment": self.experiment_path, "finished": finished}, indent=1))


SESSIONS: dict[str, RaySession] = {}


class StrategySearcher(Searcher):
    """Tune's searcher: each suggestion is the strategy's next unit.

    Args:
        session_key: the search key, under which the runner registers its ``RaySession``.
    """

    def __init__(self, session_key: str) -> None:
        super().__init__()
        self._session_key = session_key

    @property
    def _session(self) -> RaySession:
        return SESSIONS[self._session_key]

    # Ray annotates ``dict | None`` but documents (and checks for) its own FINISHED string.
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        session = self._session
        if len(session.in_flight) >= session.max_concurrent:
            return None
        unit = session.strategy.propose()
        if unit is None:
            if session.in_flight:
                # Not FINISHED yet: results in flight may give the strategy more to do, and
                # Tune would persist FINISHED, so a restore after a kill now could never
                # ask for the units the kill interrupted.
                return None
            session.finished = True
            session.write_state(finished=True)
            return Searcher.FINISHED
        session.in_flight[trial_id] = unit
        return {KEY: unit.key, UNIT: unit}

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        session = self._session
        unit = session.in_flight.pop(trial_id, None)
        if unit is None:
            return
        status = (result or {}).get(STATUS)
        stopped = stopped_result(self._session_key, trial_id, result)
        if stopped is not None:
            # The scheduler stopped the trial: Tune ended its worker before it could record
            # itself, so it is recorded here, as the worker would have.
            strategy = session.strategy
            record_stopped_trial(strategy.tracker, run_dir=strategy.setup.run_dir,
                                 search_key=strategy.setup.search_key, key=unit.key,
                                 number=unit.number, result=stopped[0], series=stopped[1])
            done = Finished(unit, value=stopped[0])
        elif status is None and not error:
            # Stopped without a result (the search was interrupted): the study keeps it
            # RUNNING, and the next run fails it as stale and runs it again.
            return
        elif status is None:
            done = Finished(unit, error=f"its Ray worker died {session.max_failures + 1} "
                                        f"time(s)")
        else:
            assert result is not None
            done = Finished(unit, value=decode(result[VALUE]) if status == "done" else None,
                            node_id=result.get(NODE_ID), error=result.get(ERROR) or None)
        session.strategy.consume(done)

    def save(self, checkpoint_path: str) -> None:
        # Nothing to keep (module doc), but Tune's restore wants a file to find.
        Path(checkpoint_path).write_text(json.dumps({"session": self._session_key}))

    def restore(self, checkpoint_path: str) -> None:
        """The strategy of the resumed search is the one this process registered."""
