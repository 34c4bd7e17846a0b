"""runner=ray on a local Ray it starts itself: the same search and records as runner=local."""

from __future__ import annotations

import json

import pytest

from tests.runners_tests.conftest import run_cli_watched, search_args, search_runs, study_trials

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _specs(run_dir):
    return {int(p.parent.name): json.loads(p.read_text())
            for p in (run_dir / "trials").glob("*/spec.json")}


def _records(tmp):
    """Per trial key: status, params, metric names, pareto tags; and the parent run."""
    parents, children = search_runs(f"sqlite:///{tmp / 'mlflow.db'}")
    assert len(parents) == 1
    parent = parents[0]
    by_key = {}
    for child in children:
        tags = child.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        by_key[int(tags["sparsearch.trial_key"])] = {
            "status": child.info.status, "params": child.data.params,
            "metrics": sorted(child.data.metrics), "pareto": tags["pareto"],
            "rank": tags.get("pareto_rank"), "accuracy": child.data.metrics.get("accuracy")}
    assert len(by_key) == len(children), "a trial has two MLflow runs"
    return parent, by_key


def test_local_and_ray_run_the_same_search_with_the_same_records(tmp_path):
    # One torch thread in both, so the same subnets train to the same numbers.
    common = ["search.n_trials=4", "train.threads=1", "seed=5"]
    for runner in ("local", "ray"):
        (tmp_path / runner).mkdir()
        code, out = run_cli_watched(
            [*search_args(tmp_path / runner), *common, f"runner={runner}",
             "runner.num_cpus=2"], cwd=tmp_path / runner)
        assert code == 0, out[-3000:]
        assert "Pareto-optimal subnets of tiny (random, 4 complete" in out
        assert "database is locked" not in out

    local_specs, ray_specs = _specs(tmp_path / "local" / "run"), _specs(tmp_path / "ray" / "run")
    assert sorted(local_specs) == [0, 1, 2, 3]
    assert ray_specs == local_specs

    local_parent, local_runs = _records(tmp_path / "local")
    ray_parent, ray_runs = _records(tmp_path / "ray")
    assert local_parent.info.status == ray_parent.info.status == "FINISHED"
    assert ray_parent.data.params["runner"] == "ray"
    for key in ("hypervolume", "n_complete", "n_failed"):
        assert ray_parent.data.metrics[key] == pytest.approx(local_parent.data.metrics[key])
    assert sorted(ray_runs) == sorted(local_runs)
    for key, local in local_runs.items():
        ray = ray_runs[key]
        assert ray["params"] == local["params"]
        assert ray["metrics"] == local["metrics"]
        assert (ray["status"], ray["pareto"], ray["rank"]) == (
            local["status"], local["pareto"], local["rank"])
        assert ray["accuracy"] == pytest.approx(local["accuracy"])
    assert any(r["pareto"] == "true" for r in ray_runs.values())

    # The study finalize_search read holds every trial, as the local runner leaves it, plus
    # the node each trial ran on.
    trials = study_trials(tmp_path / "ray" / "run")
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state.name == "COMPLETE" and t.values for t in trials)
    assert all(t.user_attrs["sparsearch.metrics"]["accuracy"] == t.values[0] for t in trials)
    assert all(t.user_attrs["sparsearch.node_id"] for t in trials)
    session = json.loads((tmp_path / "ray" / "run" / "tune_session.json").read_text())
    assert session["finished"] is True
    assert session["experiment"].startswith(str(tmp_path / "ray" / "run" / "ray"))
