"""The local runner: trials one after another in this process, through Optuna ask/tell."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sparsearch.search.setup import SearchSetup
from sparsearch.search.study import REASON, budget_used, trial_key
from sparsearch.search.trial import TrialJob, TrialWriteError, run_trial

__all__ = ["run_local"]


def objective_values(setup: SearchSetup, metrics: dict[str, float]) -> list[float]:
    return [float(metrics[m]) for m, _ in setup.objectives]


def run_local(setup: SearchSetup, study: Any, *, tracker: Any, parent_run_id: str,
              on_trial: Callable[[int, str], None]) -> None:
    """Runs trials until ``search.n_trials`` are finished or ``search.timeout_s`` passed.

    Args:
        setup: the validated search.
        study: its Optuna study (resumed or new).
        tracker: the MLflow tracker.
        parent_run_id: the search's parent run.
        on_trial: called after each trial with (trial key, status), for progress.
    """
    from optuna.trial import TrialState

    cfg = setup.cfg.search
    started = time.monotonic()
    while True:
        if cfg.n_trials is not None and budget_used(study) >= cfg.n_trials:
            return
        if cfg.timeout_s is not None and time.monotonic() - started >= cfg.timeout_s:
            return
        trial = study.ask()
        key = trial_key(trial)
        spec = setup.space.sample(trial)
        job = TrialJob(spec=spec, key=key, number=trial.number, ctx=setup.ctx,
                       run_dir=str(setup.run_dir), tracking_uri=setup.cfg.tracking.uri,
                       experiment=setup.experiment, search_key=setup.search_key,
                       parent_run_id=parent_run_id,
                       extra_params={"strategy": cfg.strategy})
        try:
            result = run_trial(job, tracker=tracker)
        except TrialWriteError as err:
            trial.set_user_attr(REASON, str(err))
            study.tell(trial, state=TrialState.FAIL)
            on_trial(key, "failed")
            raise
        trial.set_user_attr("sparsearch.metrics", result.metrics)
        if result.status == "complete" and all(m in result.metrics for m, _ in setup.objectives):
            study.tell(trial, objective_values(setup, result.metrics))
        else:
            trial.set_user_attr(REASON, result.reason or "objective metric missing")
            study.tell(trial, state=TrialState.FAIL)
        on_trial(key, result.status)
