"""The real command, as a user types it: end to end, resume, bad input, help."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from tests.conftest import run_cli, tiny_search_args

pytestmark = pytest.mark.slow


def search_runs(uri: str, experiment: str):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sparsearch.role") == "search"]
    children = [r for r in runs if r.data.tags.get("sparsearch.role") == "trial"]
    return client, parents, children


def assert_pareto_tags_are_the_front(children) -> None:
    """The pareto tag (and metric) is the front of the children's own metrics (accuracy up,
    density down)."""
    from sparsearch.pareto import pareto_front

    points = [[c.data.metrics["accuracy"], c.data.metrics["density"]] for c in children]
    on_front = {children[i].info.run_id for i in pareto_front(points, ["max", "min"])}
    assert {c.info.run_id: (c.data.tags["pareto"], c.data.metrics["pareto"])
            for c in children} == {
        c.info.run_id: ("true", 1.0) if c.info.run_id in on_front else ("false", 0.0)
        for c in children}


def test_search_end_to_end_then_resume(tmp_path):
    args = tiny_search_args(tmp_path, seeded=True)
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Pareto-optimal subnets of tiny" in first.stdout
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, parents, children = search_runs(uri, "tiny")
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["hypervolume"] > 0
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "pareto.json", "pareto.png", "config.yaml"}
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        assert {"pattern", "allocation", "recipe", "lr"} <= set(child.data.params)
        assert {"accuracy", "density", "nnz", "flops", "train_s"} <= set(child.data.metrics)
    assert_pareto_tags_are_the_front(children)
    front = [c for c in children if c.data.tags["pareto"] == "true"]
    assert front and sorted(int(c.data.tags["pareto_rank"]) for c in front) == list(
        range(len(front)))
    assert all("test_accuracy" in c.data.metrics for c in front)
    report = json.loads((tmp_path / "run" / "pareto.json").read_text())
    assert len(report["front"]) == len(front)
    # Test hypervolume: the val front scored with its members' test accuracy, same reference.
    from sparsearch.pareto import hypervolume

    test_points = [[c.data.metrics["test_accuracy"], c.data.metrics["density"]] for c in front]
    expected = hypervolume(test_points, report["reference"], ["max", "min"])
    assert report["test_hypervolume"] == pytest.approx(expected)
    assert parent.data.metrics["test_hypervolume"] == pytest.approx(expected)
    assert f"on the test split {expected:.4f}" in first.stdout
    assert (tmp_path / "run" / "optuna.journal").exists()
    assert not (tmp_path / "run" / "optuna.db").exists()
    assert (tmp_path / "run" / "trials" / "00000" / "weights.safetensors").exists()
    # Every Pareto subnet is exported and registered under an alias per rank.
    index = json.loads((tmp_path / "run" / "exports" / "index.json").read_text())
    assert sorted(index) == [str(r) for r in range(len(front))]
    version = client.get_model_version_by_alias("tiny-tpe", "pareto-0")
    assert str(version.version) == index["0"]["version"]
    assert (tmp_path / "run" / "exports" / "rank-0" / "manifest.json").exists()

    # The same command again: a resume of a finished search runs nothing new.
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    _, parents2, children2 = search_runs(uri, "tiny")
    assert len(parents2) == 1
    versions = client.search_model_versions("name = 'tiny-tpe'")
    assert len(versions) == len(front)  # nothing registered twice
    assert sorted(c.info.run_id for c in children2) == sorted(c.info.run_id for c in children)

    # A larger budget on the same run dir runs only the missing trial. A run an earlier
    # end put on the front (here: forced, as if the new trial had displaced it) is taken
    # off it again when it is not on the new front.
    off_front = [c for c in children if c.data.tags["pareto"] == "false"]
    for c in off_front:
        client.set_tag(c.info.run_id, "pareto", "true")
    more = run_cli([*args, "search.n_trials=4"], cwd=tmp_path)
    assert more.returncode == 0, more.stderr[-3000:]
    _, _, children3 = search_runs(uri, "tiny")
    assert len(children3) == 4
    assert_pareto_tags_are_the_front(children3)
    # The extra trial is a new draw, not a replay of trial 0 by a freshly seeded sampler.
    specs = {c.data.tags["sparsearch.trial_key"]: c.data.tags["sparsearch.spec"]
             for c in children3}
    assert specs["3"] != specs["0"]


def test_diverging_trials_fail_and_the_search_goes_on(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  sparsity: {float: [0.5, 0.9]}\n"
                     "  lr: {choice: [0.01, 1.0e+12]}\n")
    result = run_cli([*tiny_search_args(tmp_path, seeded=True), f"space={space}",
                      "search.strategy=random",
                      "search.n_trials=4", "seed=3"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    _, _, children = search_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "tiny")
    statuses = sorted(c.info.status for c in children)
    assert "FAILED" in statuses and "FINISHED" in statuses
    failed = [c for c in children if c.info.status == "FAILED"]
    assert all("diverged" in c.data.tags["sparsearch.fail_reason"] for c in failed)


BAD_SPACES = {
    "unknown parameter": "params: {colour: {choice: [red]}}",
    "bad kind": "params: {sparsity: {normal: [0.1, 0.5]}}",
    "when on a missing parameter": "params: {nm: {choice: ['2:4'], when: {pattern: nm}}}",
    "N >= M": "params: {pattern: {fixed: nm}, nm: {choice: ['4:4']}}",
    "sparsity outside [0, 1)": "params: {sparsity: {float: [0.5, 1.5]}}",
    "glob matching no layer": "params: {sparsity: 0.5}\nlayers: {'conv*': {dense: true}}",
}


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_bad_space_exits_2_with_one_line(tmp_path, case):
    space = tmp_path / "bad.yaml"
    space.write_text(BAD_SPACES[case])
    result = run_cli([*tiny_search_args(tmp_path), f"space={space}"], cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad.yaml" in errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(("override", "message"), [
    ("space=no_such_space", "space must be one of"),
    ("search.strategy=simulated_annealing", "search.strategy must be one of"),
    ("search.objectives=[accuracy:max,speed:min]", "search.objectives metric"),
    ("search.n_trials=abc", None),
    ("search.no_such_key=1", None),
    ("search.objectives=[accuracy:max,train_s:min]", "search.reference.train_s must be set"),
    ("runner.resources_per_trial.cpu=-1", "runner.resources_per_trial.cpu must be >= 0"),
])
def test_bad_overrides_exit_2(tmp_path, override, message):
    result = run_cli([*tiny_search_args(tmp_path), override], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert len([ln for ln in result.stderr.splitlines() if ln.strip()]) == 1, result.stderr
    assert result.stderr.startswith("error:")
    if message:
        assert message in result.stderr
    assert not (tmp_path / "run").exists()


def test_ray_trial_holding_a_gpu_it_would_not_use_exits_2(tmp_path):
    # Rejected before Ray starts: nothing of the run exists afterwards.
    result = run_cli([*tiny_search_args(tmp_path), "runner=ray",
                      "runner.resources_per_trial.gpu=1", "train.device=cpu"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: runner.resources_per_trial.gpu is 1.0 but "
                                    "train.device is cpu"), result.stderr
    assert not (tmp_path / "run").exists()


def test_help_is_fast_and_lists_the_groups(tmp_path):
    # Fast because --help never imports torch, Optuna, MLflow or Ray (seconds each); checked
    # by what is imported rather than by a clock, which a loaded machine would fail.
    result = run_cli(["--help"], cwd=tmp_path, timeout=60, python_args=["-X", "importtime"])
    assert result.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "sparsearch" in imported
    heavy = {"torch", "optuna", "mlflow", "ray"}
    assert not imported & heavy, imported & heavy
    for group in ("data:", "model:", "search:", "runner:", "tracking:", "experiment:"):
        assert group in result.stdout
    assert "python -m sparsearch" in result.stdout
