"""The local runner: units one after another in this process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparsearch.runners import Runner
from sparsearch.search.trial import TrialWriteError
from sparsearch.search.work import Finished, Worker, work_env

if TYPE_CHECKING:
    from sparsearch.search.strategies import Strategy

__all__ = ["LocalRunner"]


class LocalRunner(Runner):
    """Executes each proposed unit here, at once, and hands its result back."""

    def run(self, strategy: Strategy) -> None:
        worker = Worker(env=work_env(self.setup, self.parent_run_id), tracker=self.tracker,
                        on_report=self.on_report)
        while (unit := strategy.propose()) is not None:
            try:
                value = unit.execute(worker)
            except TrialWriteError as err:
                # The strategy records the unit failed with the reason; the search stops,
                # since every later unit would fail to write alike.
                strategy.consume(Finished(unit, error=str(err)))
                raise
            strategy.consume(Finished(unit, value))
