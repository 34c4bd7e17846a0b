"""search.scheduler=asha under runner=ray: the Tune scheduler stops the trials the local
runner stops, and concurrent Ray trials are stopped and recorded the same way."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from tests.conftest import mlflow_uri
from tests.runners_tests.conftest import search_args, search_runs, start_cli, study_trials

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# One torch thread everywhere, so the same subnets train to the same numbers.
COMMON = ["search.n_trials=6", "train.threads=1", "seed=3", "search.scheduler=asha",
          "search.min_epochs=1", "search.eta=3", "runner.num_cpus=2"]


def _stops(tmp):
    """Per trial key: Optuna state, rung records; MLflow status, stop tag, val history."""
    uri = mlflow_uri(tmp / "mlflow.db")
    client = MlflowClient(tracking_uri=uri)
    _, children = search_runs(uri)
    runs = {int(c.data.tags["sparsearch.trial_key"]): c for c in children}
    out = {}
    for t in study_trials(tmp / "run"):
        run = runs[t.number]
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        out[t.number] = {
            "state": t.state.name, "rungs": t.user_attrs["sparsearch.rungs"],
            "status": run.info.status, "stopped_at": run.data.tags.get(
                "sparsearch.stopped_at_epoch"),
            "history": sorted(m.step for m in history)}
    return out


def test_ray_stops_exactly_the_trials_local_stops_and_copes_with_two_at_once(tmp_path):
    # The three searches at once (most of each is starting Ray and workers); one torch
    # thread each keeps their numbers independent of the load.
    commands = {}
    for name, runner in (("local", ["runner=local"]),
                         ("ray1", ["runner=ray", "runner.max_concurrent_trials=1"]),
                         ("ray2", ["runner=ray", "runner.max_concurrent_trials=2"])):
        (tmp_path / name).mkdir()
        commands[name] = start_cli([*search_args(tmp_path / name, epochs=3), *COMMON, *runner],
                                   cwd=tmp_path / name)
    for command in commands.values():
        code, out = command.wait(), command.output()
        assert code == 0, out[-3000:]
        assert "early stopping:" in out

    local, ray = _stops(tmp_path / "local"), _stops(tmp_path / "ray1")
    pruned = {k for k, v in local.items() if v["state"] == "PRUNED"}
    assert pruned and len(pruned) < 6
    assert {k for k, v in ray.items() if v["state"] == "PRUNED"} == pruned
    for key, expected in local.items():
        got = ray[key]
        assert (got["status"], got["stopped_at"], got["history"]) == (
            expected["status"], expected["stopped_at"], expected["history"])
        assert got["rungs"]["1"]["survived"] == expected["rungs"]["1"]["survived"]
        assert got["rungs"]["1"]["values"] == pytest.approx(expected["rungs"]["1"]["values"])

    # Two trials at once: the search finished, stopped trials recorded as under one at a time.
    both = _stops(tmp_path / "ray2")
    assert len(both) == 6
    for record in both.values():
        if record["state"] == "PRUNED":
            assert record["status"] == "KILLED" and record["stopped_at"] == "1"
            assert record["history"] == [1] and not record["rungs"]["1"]["survived"]
        else:
            assert record["state"] == "COMPLETE" and record["status"] == "FINISHED"
            assert record["history"] == [1, 2, 3]
