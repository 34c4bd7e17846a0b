"""search.scheduler=asha under the local runner: the real command stops weak trials, records
them pruned in Optuna and MLflow, keeps them off the front, and a rerun keeps its rungs."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from sparsearch.search.study import trial_key
from tests.conftest import mlflow_uri
from tests.runners_tests.conftest import run_cli_watched, search_args, search_runs, study_trials

pytestmark = pytest.mark.slow

ASHA = ["search.scheduler=asha", "search.min_epochs=1", "search.eta=3"]


def test_asha_stops_weak_trials_and_a_rerun_keeps_its_rungs(tmp_path):
    uri = mlflow_uri(tmp_path / "mlflow.db")
    run_dir = tmp_path / "run"
    code, out = run_cli_watched([*search_args(tmp_path, n_trials=6, epochs=3), *ASHA],
                                cwd=tmp_path)
    assert code == 0, out[-3000:]

    trials = study_trials(run_dir)
    pruned = {t.number for t in trials if t.state.name == "PRUNED"}
    complete = {t.number for t in trials if t.state.name == "COMPLETE"}
    assert pruned and complete and len(pruned | complete) == 6
    for t in trials:
        # Every trial met the one rung (epoch 1 of 3); the pruned ones lost there.
        rung = t.user_attrs["sparsearch.rungs"]["1"]
        assert rung["survived"] == (t.number in complete)
    assert f"early stopping: {len(pruned)} trial(s) stopped ({len(pruned)} at epoch 1); " \
           f"{2 * len(pruned)} of 18 epochs saved" in out

    client = MlflowClient(tracking_uri=uri)
    parents, children = search_runs(uri)
    by_key = {int(c.data.tags["sparsearch.trial_key"]): c for c in children}
    for key in pruned:
        run = by_key[key]
        assert run.info.status == "KILLED" and run.data.tags["sparsearch.status"] == "pruned"
        assert run.data.tags["sparsearch.stopped_at_epoch"] == "1"
        assert run.data.tags["pareto"] == "false"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [1]
        # Not exported: no weights were kept.
        assert not (run_dir / "trials" / f"{key:05d}" / "weights.safetensors").exists()
    for key in complete:
        history = client.get_metric_history(by_key[key].info.run_id, "val_accuracy")
        assert sorted(m.step for m in history) == [1, 2, 3]
    front = {e["key"] for e in json.loads((run_dir / "pareto.json").read_text())["front"]}
    assert front and front <= complete
    assert parents[0].data.metrics["n_pruned"] == len(pruned)
    assert parents[0].data.metrics["epochs_saved"] == 2 * len(pruned)

    # Rerun with a larger budget: finished trials, pruned ones included, are not run again,
    # and the new trials are ranked against the rung records of the first run.
    first_runs = {k: c.info.run_id for k, c in by_key.items()}
    code, out = run_cli_watched([*search_args(tmp_path, n_trials=9, epochs=3), *ASHA],
                                cwd=tmp_path, log_name="second.log")
    assert code == 0, out[-3000:]
    _, children = search_runs(uri)
    assert len(children) == 9
    by_key = {int(c.data.tags["sparsearch.trial_key"]): c for c in children}
    for key in pruned:
        assert by_key[key].info.run_id == first_runs[key]
        assert len(client.get_metric_history(first_runs[key], "val_accuracy")) == 1
    trials = study_trials(run_dir)
    assert len(trials) == 9
    assert all("1" in t.user_attrs["sparsearch.rungs"] for t in trials)


def test_compare_runs_an_entry_with_its_scheduler(tmp_path):
    code, out = run_cli_watched([*search_args(tmp_path, n_trials=4, epochs=3),
                                 "search.compare=[random,random_asha]"], cwd=tmp_path)
    assert code == 0, out[-3000:]
    plain = study_trials(tmp_path / "run" / "random")
    early = study_trials(tmp_path / "run" / "random_asha")
    assert all(t.state.name == "COMPLETE" and "sparsearch.rungs" not in t.user_attrs
               for t in plain)
    assert all("1" in t.user_attrs["sparsearch.rungs"] for t in early)
    # The same sampler seed: the same four subnets, one of them stopped at least.
    assert [t.params for t in early] == [t.params for t in plain]
    assert any(t.state.name == "PRUNED" for t in early)
    assert "random_asha" in out and "epochs saved" in out


def test_rung_masks_final_ranks_what_the_history_records_at_target(tmp_path):
    uri = mlflow_uri(tmp_path / "mlflow.db")
    args = [*search_args(tmp_path, n_trials=4, epochs=3), *ASHA, "search.rung_masks=final"]
    code, out = run_cli_watched(args, cwd=tmp_path)
    assert code == 0, out[-3000:]
    client = MlflowClient(tracking_uri=uri)
    _, children = search_runs(uri)
    by_key = {int(c.data.tags["sparsearch.trial_key"]): c.info.run_id for c in children}
    for t in study_trials(tmp_path / "run"):
        at_target = {m.step: m.value for m in client.get_metric_history(
            by_key[trial_key(t)], "val_accuracy_at_target")}
        # The rung ranked accuracy (the first objective) as measured at the final masks.
        assert t.user_attrs["sparsearch.rungs"]["1"]["values"][0] == pytest.approx(at_target[1])
    # Another rung measure is another search: the same run dir refuses it.
    code, out = run_cli_watched([*args[:-1], "search.rung_masks=current"], cwd=tmp_path,
                                log_name="second.log")
    assert code == 2 and "rung_masks" in out, out[-2000:]
