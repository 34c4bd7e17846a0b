"""The Tune scheduler adapter on hand-made epoch results, over a real Optuna study
(no Ray cluster: Tune calls ``on_trial_result`` in the driver with exactly these dicts)."""

from __future__ import annotations

import optuna
from ray.tune.schedulers import TrialScheduler

from sparsearch.schedulers import open_scheduler
from sparsearch.schedulers._ray import (
    RungScheduler,
    epoch_result,
    register_rule,
    stopped_result,
    unregister_rule,
)


class _Search:
    scheduler, min_epochs, eta = "asha", 1, 3


def test_scheduler_stops_the_rung_loser_and_the_driver_can_tell_it_was_stopped(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}",
                                directions=["maximize", "minimize"])
    objectives = [("accuracy", "max"), ("density", "min")]
    register_rule("k", open_scheduler(_Search, max_epochs=9, objectives=objectives,
                                      study=study), study)
    try:
        scheduler = RungScheduler("k")
        numbers = [study.ask().number for _ in range(2)]
        series = [("val_accuracy", 0.5, 1)]

        def result(number: int, epoch: int, accuracy: float) -> dict:
            return epoch_result(key=number, epoch=epoch,
                                reported={"accuracy": accuracy, "density": 0.5,
                                          "max_epochs": 9.0},
                                series=series, objectives=("accuracy", "density"))

        first, second = result(numbers[0], 1, 0.9), result(numbers[1], 1, 0.5)
        assert scheduler.on_trial_result(None, None, first) == TrialScheduler.CONTINUE
        assert scheduler.on_trial_result(None, None, second) == TrialScheduler.STOP
        # Not a rung, and a trial's final result (no epoch): no decision.
        assert scheduler.on_trial_result(None, None, result(numbers[0], 2, 0.1)) == \
            TrialScheduler.CONTINUE
        assert scheduler.on_trial_result(None, None, {"accuracy": 0.1}) == \
            TrialScheduler.CONTINUE

        stopped = stopped_result(study, numbers[1], second)
        assert stopped is not None
        pruned, kept_series = stopped
        assert pruned.status == "pruned" and pruned.metrics["stopped_at_epoch"] == 1
        assert pruned.metrics["accuracy"] == 0.5 and kept_series == series
        # The survivor's last result, or an interrupted trial's, is not a stop.
        assert stopped_result(study, numbers[0], first) is None
        assert stopped_result(study, numbers[0], None) is None
    finally:
        unregister_rule("k")
