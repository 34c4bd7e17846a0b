"""Strategies: what to try next. Each proposes units of work and consumes their results.

A strategy (``Strategy``) sees a search through its study and records; a runner
(``runners/``) executes what it proposes and hands each result back (``search/work.py``).
Neither knows the other's kind: ``app.run_one`` builds ``STRATEGIES.get(strategy)`` and
``RUNNERS.get(runner)`` and lets the runner drive the strategy. A new strategy is one
module with a ``Strategy`` subclass and one ``STRATEGIES`` line here.

The Optuna samplers (random, tpe, nsga2) are ``SamplerStrategy``: one trial per proposal,
asked of the study and told its values. Optuna 5 changed several defaults (TPE
multivariate and constant_liar on; TPE the default multi-objective sampler), so every
sampler is built here with its arguments spelled out, and the same seed gives the same
sequence of trials.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sparsearch import mlflow_keys as keys
from sparsearch.catalogue import Catalogue
from sparsearch.search.work import Finished, Unit

if TYPE_CHECKING:
    import optuna

    from sparsearch.config import SparsearchConfig
    from sparsearch.evaluate import TrialResult
    from sparsearch.search.setup import SearchSetup
    from sparsearch.search.trial import TrialUnit
    from sparsearch.tracking import Tracker

__all__ = ["STRATEGIES", "Strategy", "create_sampler"]


class Strategy:
    """What every strategy offers its runner.

    The contract a runner relies on: it calls ``propose`` while it has a free slot and
    ``consume`` once per proposed unit; a strategy that proposes nothing while none of its
    units is in flight is finished. Budgets (``search.n_trials``, ``search.timeout_s``)
    are the strategy's to enforce, counting its units in flight.

    Args:
        setup: the validated search.
        study: its Optuna study (resumed or new), the record ``finalize_search`` reads.
        tracker: the MLflow tracker of the driver.
        parent_run_id: the search's parent run.
        on_trial: called after each finished trial with (trial key, status), for progress.
    """

    def __init__(self, setup: SearchSetup, study: optuna.Study, *, tracker: Tracker,
                 parent_run_id: str, on_trial: Callable[[int, str], None]) -> None:
        self.setup = setup
        self.study = study
        self.tracker = tracker
        self.parent_run_id = parent_run_id
        self.on_trial = on_trial
        self.started = time.monotonic()

    @classmethod
    def check(cls, setup: SearchSetup) -> None:
        """Raises ConfigError for a search this strategy cannot run (before any record)."""

    @classmethod
    def sampler(cls, cfg: SparsearchConfig, *, offset: int) -> optuna.samplers.BaseSampler:
        """The sampler the study is opened with; ``offset`` moves the seed on a resume."""
        return create_sampler("random", seed=cfg.seed + offset)

    def propose(self) -> Unit | None:
        """The next unit to execute, or None when there is none now."""
        raise NotImplementedError

    def consume(self, done: Finished) -> None:
        """Takes a proposed unit's result (or the runner's reason it could not run)."""
        raise NotImplementedError

    def time_left(self) -> bool:
        timeout = self.setup.cfg.search.timeout_s
        return timeout is None or time.monotonic() - self.started < timeout

    def trial_result(self, done: Finished) -> TrialResult:
        """A trial unit's result; a runner's failure fails the trial and its MLflow run."""
        from sparsearch.evaluate import TrialResult

        if done.error is None:
            return done.value
        self.tracker.fail_trial_run(self.setup.search_key, done.unit.key, done.error)
        return TrialResult("failed", {}, done.error)


class SamplerStrategy(Strategy):
    """An Optuna sampler: one trial per proposal (``study.ask``), told its objectives."""

    def __init__(self, setup: SearchSetup, study: optuna.Study, *, tracker: Tracker,
                 parent_run_id: str, on_trial: Callable[[int, str], None]) -> None:
        super().__init__(setup, study, tracker=tracker, parent_run_id=parent_run_id,
                         on_trial=on_trial)
        self._asked: dict[int, optuna.Trial] = {}

    @classmethod
    def sampler(cls, cfg: SparsearchConfig, *, offset: int) -> optuna.samplers.BaseSampler:
        s = cfg.search
        return create_sampler(s.strategy, seed=cfg.seed + offset,
                              n_startup_trials=s.n_startup_trials,
                              population_size=s.population_size)

    def propose(self) -> TrialUnit | None:
        from sparsearch.search.study import budget_used, trial_key
        from sparsearch.search.trial import TrialUnit

        n_trials = self.setup.cfg.search.n_trials
        if n_trials is not None and budget_used(self.study) + len(self._asked) >= n_trials:
            return None
        if not self.time_left():
            return None
        trial = self.study.ask()
        self._asked[trial.number] = trial
        return TrialUnit(spec=self.setup.space.sample(trial), key=trial_key(trial),
                         number=trial.number,
                         extra_params={"strategy": self.setup.cfg.search.strategy})

    def consume(self, done: Finished) -> None:
        from optuna.trial import TrialState

        trial = self._asked.pop(done.unit.number)
        result = self.trial_result(done)
        trial.set_user_attr(keys.METRICS, result.metrics)
        if done.node_id:
            trial.set_user_attr(keys.NODE_ID, done.node_id)
        objectives = self.setup.objectives
        if result.status == "complete" and all(m in result.metrics for m, _ in objectives):
            self.study.tell(trial, [float(result.metrics[m]) for m, _ in objectives])
        elif result.status == "pruned":
            # Stopped at a rung by search.scheduler: the sampler sees it as pruned.
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            trial.set_user_attr(keys.FAIL_REASON, result.reason or "objective metric missing")
            self.study.tell(trial, state=TrialState.FAIL)
        self.on_trial(done.unit.key, result.status)


def _random(*, seed: int, **_: Any) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _tpe(*, seed: int, n_startup_trials: int, **_: Any) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials,
                                      multivariate=True, constant_liar=True)


def _nsga2(*, seed: int, population_size: int, **_: Any) -> Any:
    import optuna

    # NSGA-II samples parameters outside the intersection space independently, which
    # is how conditional dimensions (nm only when pattern is nm) are handled.
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size)


SAMPLERS: Catalogue[Callable[..., Any]] = Catalogue("sampler", field="search.strategy")
SAMPLERS.register("random", _random)
SAMPLERS.register("tpe", _tpe)
SAMPLERS.register("nsga2", _nsga2)


def create_sampler(strategy: str, *, seed: int, n_startup_trials: int = 10,
                   population_size: int = 16) -> Any:
    """Builds the Optuna sampler of a strategy.

    Args:
        strategy: a name of ``SAMPLERS`` (random | tpe | nsga2).
        seed: sampler seed.
        n_startup_trials: TPE's random start.
        population_size: NSGA-II's population.
    """
    return SAMPLERS.get(strategy)(seed=seed, n_startup_trials=n_startup_trials,
                                  population_size=population_size)


STRATEGIES: Catalogue[type[Strategy]] = Catalogue("strategy", field="search.strategy")
for _name in SAMPLERS.names():
    STRATEGIES.register(_name, SamplerStrategy)
# Lazily: DASS imports torch, and config validation reads the names without it.
STRATEGIES.register_lazy("dass", "sparsearch.search.dass.run:DassStrategy")
STRATEGIES.register_lazy("dass_tpe", "sparsearch.search.dass.hybrid:DassTpeStrategy")
