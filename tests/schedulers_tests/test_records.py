"""Rung records live in the real Optuna study: a resumed search keeps its decisions."""

from __future__ import annotations

from types import SimpleNamespace

import optuna

from sparsearch.schedulers import scheduler_hook
from sparsearch.search.study import recover_stale, trial_key

SEARCH = SimpleNamespace(scheduler="asha", min_epochs=1, eta=3)
OBJECTIVES = [("accuracy", "max"), ("density", "min")]


def _open(tmp_path):
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'o.db'}",
                                directions=["maximize", "minimize"], load_if_exists=True)
    return study, scheduler_hook(SEARCH, max_epochs=9, objectives=OBJECTIVES, study=study)


def test_a_rerun_of_an_interrupted_trial_gets_its_recorded_decision(tmp_path):
    study, hook = _open(tmp_path)
    first = study.ask()
    first.suggest_float("x", 0, 1)
    assert not hook(0, 1, {"accuracy": 0.9, "density": 0.5}, [])
    study.tell(first, [0.9, 0.5])
    second = study.ask()
    second.suggest_float("x", 0, 1)
    # The weaker trial is stopped at the rung, then the process dies before telling Optuna.
    assert hook(1, 1, {"accuracy": 0.5, "density": 0.5}, [])

    study, hook = _open(tmp_path)
    assert recover_stale(study) == 1
    retry = study.ask()
    assert trial_key(retry) == 1
    # Whatever the rerun measures (here: better than trial 0), the rung keeps its one
    # recorded decision for the trial, rebuilt from the study.
    assert hook(1, 1, {"accuracy": 0.99, "density": 0.1}, [])
    stored = study.get_trials(deepcopy=False)[retry.number].user_attrs
    assert stored["sparsearch.rungs"]["1"] == {"values": [0.5, 0.5], "survived": False}
    # Epochs that are not rungs are no decision.
    assert not hook(1, 2, {"accuracy": 0.1, "density": 0.9}, [])


def test_none_scheduler_has_no_hook(tmp_path):
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert scheduler_hook(SimpleNamespace(scheduler="none", min_epochs=1, eta=3), max_epochs=9,
                          objectives=OBJECTIVES, study=study) is None
