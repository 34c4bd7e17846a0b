"""Rung records live in the real Optuna study: a resumed search keeps its decisions."""

from __future__ import annotations

from types import SimpleNamespace

import optuna

from sparsearch.schedulers import epoch_reporter, open_scheduler
from sparsearch.search.study import recover_stale, trial_key

SEARCH = SimpleNamespace(scheduler="asha", min_epochs=1, eta=3)
OBJECTIVES = [("accuracy", "max"), ("density", "min")]


def _open(tmp_path):
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'o.db'}",
                                directions=["maximize", "minimize"], load_if_exists=True)
    rule = open_scheduler(SEARCH, max_epochs=9, objectives=OBJECTIVES, study=study,
                          )
    return study, rule


def test_a_rerun_of_an_interrupted_trial_gets_its_recorded_decision(tmp_path):
    study, rule = _open(tmp_path)
    first = study.ask()
    first.suggest_float("x", 0, 1)
    assert not epoch_reporter(rule, study=study, key=0)(
        1, {"accuracy": 0.9, "density": 0.5}, [])
    study.tell(first, [0.9, 0.5])
    second = study.ask()
    second.suggest_float("x", 0, 1)
    # The weaker trial is stopped at the rung, then the process dies before telling Optuna.
    assert epoch_reporter(rule, study=study, key=1)(
        1, {"accuracy": 0.5, "density": 0.5}, [])

    study, rule = _open(tmp_path)
    assert recover_stale(study) == 1
    assert {k: r.survived for k, r in rule.records[(0, 1)].items()} == {0: True, 1: False}
    retry = study.ask()
    assert trial_key(retry) == 1
    report = epoch_reporter(rule, study=study, key=1)
    # Whatever the rerun measures, the rung keeps one decision per trial.
    assert report(1, {"accuracy": 0.99, "density": 0.1}, [])
    assert len(rule.records[(0, 1)]) == 2
    stored = study.get_trials(deepcopy=False)[retry.number].user_attrs
    assert stored["sparsearch.rungs"]["1"] == {"values": [0.5, 0.5], "survived": False}
    # Epochs that are not rungs are no decision.
    assert not report(2, {"accuracy": 0.1, "density": 0.9}, [])


def test_none_scheduler_has_no_reporter(tmp_path):
    study = optuna.create_study(directions=["maximize", "minimize"])
    rule = open_scheduler(SimpleNamespace(scheduler="none", min_epochs=1, eta=3), max_epochs=9,
                          objectives=OBJECTIVES, study=study)
    assert epoch_reporter(rule, study=study, key=0) is None
