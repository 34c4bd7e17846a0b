"""The Optuna study of a search: storage in the run dir, resume, stale trials.

A search is resumable because its study lives in a SQLite file under the run dir: the
same command with the same ``hydra.run.dir`` reopens it, counts what is finished, and
runs only the rest. Trials left RUNNING by a killed process are marked failed (tagged
stale, so they do not count against the budget) and enqueued again with the same
parameters and the same trial key, so their MLflow run is reused.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsearch import mlflow_keys as keys

if TYPE_CHECKING:
    import optuna

from sparsearch.config import ConfigError

__all__ = ["RETRY_OF", "STALE", "budget_used", "open_study", "recover_stale", "trial_key"]

STALE = keys.STALE
RETRY_OF = keys.RETRY_OF
REASON = keys.FAIL_REASON


def open_study(*, name: str, storage: str | None, run_dir: Path,
               sampler: optuna.samplers.BaseSampler, directions: list[str]) -> optuna.Study:
    """Creates the study or loads it when it exists (``directions``: max/min)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage or f"sqlite:///{(run_dir / 'optuna.db').resolve()}"
    study = optuna.create_study(
        study_name=name, storage=url, sampler=sampler, load_if_exists=True,
        directions=["maximize" if d == "max" else "minimize" for d in directions],
    )
    existing = [d.name.lower()[:3] for d in study.directions]
    if existing != [d[:3] for d in directions]:
        raise ConfigError(f"search.objectives changed since this run dir's study was created "
                          f"(study has {existing}); use a new hydra.run.dir")
    return study


def trial_key(trial: Any) -> int:
    """The stable identity of a trial across retries: the first attempt's number."""
    return int(trial.user_attrs.get(RETRY_OF, trial.number))


def recover_stale(study: optuna.Study) -> int:
    """Fails RUNNING trials of a killed run and enqueues them again; returns how many."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        # Optuna has no public way to set a user attribute on a trial another process
        # started (``Trial`` needs the storage's trial id, which ``FrozenTrial`` keeps
        # private), so the stale mark goes through the storage; the state change does not.
        study._storage.set_trial_user_attr(trial._trial_id, STALE, True)
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial_key(trial)},
                            skip_if_exists=False)
    return len(stale)


def budget_used(study: optuna.Study) -> int:
    """Finished trials that count against ``search.n_trials`` (stale attempts do not)."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL,
                                                    TrialState.PRUNED))
    return sum(1 for t in done if not t.user_attrs.get(STALE))
