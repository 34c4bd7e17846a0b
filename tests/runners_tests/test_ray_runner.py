"""runner=ray on a local Ray it starts itself: the same search and records as runner=local."""

from __future__ import annotations

import json

import pytest

from tests.runners_tests.conftest import search_args, search_runs, start_cli, study_trials

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
            "rank": tags.get("pareto_rank"), "reason": tags.get("sparsearch.fail_reason"),
            "accuracy": child.data.metrics.get("accuracy", float("nan"))}
    assert len(by_key) == len(children), "a trial has two MLflow runs"
    return parent, by_key


# Conditional (nm only for pattern nm), fixed (allocation) and diverging (lr 1e12) values:
# with seed 4 the random sampler draws both patterns and one diverging trial of four.
SPACE = """params:
  pattern: {choice: [unstructured, nm]}
  sparsity: {float: [0.5, 0.9], when: {pattern: unstructured}}
  nm: {choice: ["2:4", "1:4"], when: {pattern: nm}}
  allocation: erk
  lr: {choice: [0.01, 1.0e+12]}
"""


def test_local_and_ray_run_the_same_search_with_the_same_records(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    # One torch thread in both, so the same subnets train to the same numbers.
    common = ["search.n_trials=4", "train.threads=1", "seed=4", f"space={space}"]
    commands = {}
    for runner in ("local", "ray"):
        (tmp_path / runner).mkdir()
        # Side by side: the local search runs while Ray starts up.
        commands[runner] = start_cli([*search_args(tmp_path / runner), *common,
                                      f"runner={runner}", "runner.num_cpus=2"],
                                     cwd=tmp_path / runner)
    for command in commands.values():
        code, out = command.wait(), command.output()
        assert code == 0, out[-3000:]
        assert "Pareto-optimal subnets of tiny (random, 3 complete, 1 failed)" in out
        assert "database is locked" not in out

    local_specs, ray_specs = _specs(tmp_path / "local" / "run"), _specs(tmp_path / "ray" / "run")
    assert sorted(local_specs) == [0, 1, 2, 3]
    assert ray_specs == local_specs
    assert {s["pattern"] for s in ray_specs.values()} == {"unstructured", "nm"}
    assert {s["allocation"] for s in ray_specs.values()} == {"erk"}

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
        assert ray["accuracy"] == pytest.approx(local["accuracy"], nan_ok=True)
        assert ray["reason"] == local["reason"]
    assert any(r["pareto"] == "true" for r in ray_runs.values())
    assert [r["status"] for r in ray_runs.values()].count("FAILED") == 1

    # The study finalize_search read holds every trial as the local runner leaves it (values
    # and metrics, or the failure and its reason), plus the node each trial ran on.
    local_trials = study_trials(tmp_path / "local" / "run")
    trials = study_trials(tmp_path / "ray" / "run")
    assert [t.number for t in trials] == [0, 1, 2, 3]
    for local, ray in zip(local_trials, trials):
        assert ray.state == local.state and ray.params == local.params
        if local.values is None:
            assert ray.values is None
        else:
            assert ray.values == pytest.approx(local.values)
        assert ray.user_attrs.get("sparsearch.fail_reason") == local.user_attrs.get(
            "sparsearch.fail_reason")
        assert set(ray.user_attrs["sparsearch.metrics"]) == set(
            local.user_attrs["sparsearch.metrics"])
        assert ray.user_attrs["sparsearch.node_id"]
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and "diverged" in failed[0].user_attrs["sparsearch.fail_reason"]
    session = json.loads((tmp_path / "ray" / "run" / "tune_session.json").read_text())
    assert session["finished"] is True
    assert session["experiment"].startswith(str(tmp_path / "ray" / "run" / "ray"))
