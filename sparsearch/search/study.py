"""The Optuna study of a search: storage in the run dir, resume, stale trials.

A search is resumable because its study lives in a file under the run dir: the same
command with the same ``hydra.run.dir`` reopens it, counts what is finished, and runs
only the rest. The file is Optuna's journal (``optuna.journal``): an append-only log,
written whole lines at a time under a lock and synced; a line torn by a crash mid-write
(a power loss) is cut off when the search reopens the file, so the next line cannot be
glued to it. It replaced a SQLite file (``optuna.db``), where every write went through
SQLAlchemy: a trial's ask, suggests, attributes and tell cost about ten times as much
(``benchmarks/study_storage.py``), paid inside the wall-clock budget, which made early
stopping's many short trials dear. A run dir that holds an ``optuna.db`` (an older search)
keeps it, so it still resumes.

Trials left RUNNING by a killed process are marked failed (tagged
stale, so they do not count against the budget) and enqueued again with the same
parameters and the same trial key, so their MLflow run is reused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsearch import mlflow_keys as keys

if TYPE_CHECKING:
    import optuna

from sparsearch.config import ConfigError

__all__ = ["JOURNAL", "RETRY_OF", "STALE", "budget_used", "load_run_study", "open_study",
           "recover_stale", "study_file", "study_storage", "trial_key"]

STALE = keys.STALE
RETRY_OF = keys.RETRY_OF
REASON = keys.FAIL_REASON
JOURNAL = "optuna.journal"
LEGACY_DB = "optuna.db"


def study_file(run_dir: Path) -> Path:
    """The file of a run dir's study: its ``optuna.db`` if an older search left one, else
    the journal."""
    legacy = run_dir / LEGACY_DB
    return legacy if legacy.exists() else run_dir / JOURNAL


def study_storage(storage: str | None, run_dir: Path) -> Any:
    """What Optuna opens: ``search.storage`` (a URL) when set, else the run dir's file."""
    if storage:
        return storage
    path = study_file(run_dir).resolve()
    if path.name == LEGACY_DB:
        return f"sqlite:///{path}"
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


def _cut_torn_line(path: Path) -> None:
    """Truncates the journal after its last whole line (Optuna would append to a torn one,
    and the glued line could not be read back)."""
    if path.name != JOURNAL or not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        whole = handle.read().rfind(b"\n") + 1
        handle.truncate(whole)


def load_run_study(run_dir: Path, name: str, storage: str | None = None) -> optuna.Study:
    """The study a search left in ``run_dir`` (for reports, benchmarks and tests); reading
    creates nothing: FileNotFoundError when the run dir has no study file yet."""
    import optuna

    if storage is None and not study_file(run_dir).exists():
        raise FileNotFoundError(f"no Optuna study in {run_dir}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=study_storage(storage, run_dir))


def open_study(*, name: str, storage: str | None, run_dir: Path,
               sampler: optuna.samplers.BaseSampler, directions: list[str]) -> optuna.Study:
    """Creates the study or loads it when it exists (``directions``: max/min)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is None:
        _cut_torn_line(study_file(run_dir))
    study = optuna.create_study(
        study_name=name, storage=study_storage(storage, run_dir), sampler=sampler,
        load_if_exists=True,
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
