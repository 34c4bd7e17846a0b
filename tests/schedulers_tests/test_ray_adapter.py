"""The Tune scheduler adapter on hand-made epoch results, over a real Optuna study
(no Ray cluster: Tune calls ``on_trial_result`` in the driver with exactly these dicts)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import optuna
from ray.tune.schedulers import TrialScheduler

from sparsearch.schedulers import scheduler_hook
from sparsearch.schedulers._ray import (
    EPOCH,
    REPORTED,
    RUNG_KEY,
    SERIES,
    RungScheduler,
    register_hook,
    stopped_result,
    unregister_hook,
)

SEARCH = SimpleNamespace(scheduler="asha", min_epochs=1, eta=3)


def _result(key: int, epoch: int, accuracy: float) -> dict:
    # What forward_epoch hands tune.report on a worker.
    return {EPOCH: epoch, RUNG_KEY: key, SERIES: json.dumps([["val_accuracy", accuracy, 1]]),
            REPORTED: json.dumps({"accuracy": accuracy, "density": 0.5, "max_epochs": 9.0})}


def test_scheduler_stops_the_rung_loser_and_the_driver_can_tell_it_was_stopped(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}",
                                directions=["maximize", "minimize"])
    register_hook("k", scheduler_hook(SEARCH, max_epochs=9, study=study,
                                      objectives=[("accuracy", "max"), ("density", "min")]))
    try:
        scheduler = RungScheduler("k")
        keys = [study.ask().number for _ in range(2)]
        tune_trials = [SimpleNamespace(trial_id=f"t{k}") for k in keys]
        first, second = _result(keys[0], 1, 0.9), _result(keys[1], 1, 0.5)
        assert scheduler.on_trial_result(None, tune_trials[0], first) == TrialScheduler.CONTINUE
        assert scheduler.on_trial_result(None, tune_trials[1], second) == TrialScheduler.STOP
        # Not a rung, and a unit's final result (no epoch): no decision.
        assert scheduler.on_trial_result(None, tune_trials[0], _result(keys[0], 2, 0.1)) == \
            TrialScheduler.CONTINUE
        assert scheduler.on_trial_result(None, tune_trials[0], {"accuracy": 0.1}) == \
            TrialScheduler.CONTINUE

        stopped = stopped_result("k", "t1", second)
        assert stopped is not None
        pruned, series = stopped
        assert pruned.status == "pruned" and pruned.metrics["stopped_at_epoch"] == 1
        assert pruned.metrics["accuracy"] == 0.5 and series == [("val_accuracy", 0.5, 1)]
        assert study.get_trials()[keys[1]].user_attrs["sparsearch.rungs"]["1"]["survived"] is False
        # The survivor's last result, or an interrupted trial's, is not a stop.
        assert stopped_result("k", "t0", first) is None
        assert stopped_result("k", "t0", None) is None
    finally:
        unregister_hook("k")
