"""The real command with latency as an objective: measured per trial, on the front, in MLflow."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from sparsearch.pareto import hypervolume
from tests.conftest import run_cli, tiny_search_args

pytestmark = pytest.mark.slow


def test_search_with_latency_objective_records_latency_everywhere(tmp_path):
    args = [*tiny_search_args(tmp_path, seeded=True), "search.objectives=[accuracy:max,latency_ms:min]",
            "export.enabled=false"]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    report = json.loads((tmp_path / "run" / "pareto.json").read_text())
    assert report["objectives"] == ["accuracy:max", "latency_ms:min"]
    # The latency bound of the hypervolume is the dense model's own measurement.
    assert report["dense"]["latency_ms"] > 0
    assert report["reference"] == [0.0, report["dense"]["latency_ms"]]
    assert report["front"]
    for entry in report["front"]:
        assert entry["metrics"]["latency_ms"] > 0

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sparsearch.role") == "search"]
    trials = [r for r in runs if r.data.tags.get("sparsearch.role") == "trial"]
    assert len(parents) == 1 and len(trials) == 3
    # Whatever the timings, the recorded hypervolume is the front's against that reference
    # (0 when no sparse subnet beat dense on this machine's load).
    points = [[e["metrics"]["accuracy"], e["metrics"]["latency_ms"]] for e in report["front"]]
    assert parents[0].data.metrics["hypervolume"] == pytest.approx(
        hypervolume(points, report["reference"], ["max", "min"]))
    assert report["hypervolume"] == pytest.approx(parents[0].data.metrics["hypervolume"])
    assert parents[0].data.metrics["dense_latency_ms"] == report["dense"]["latency_ms"]
    complete = [r for r in trials if r.data.tags["sparsearch.status"] == "complete"]
    assert len(complete) == report["n_complete"] > 0
    for run in complete:
        assert run.data.metrics["latency_ms"] > 0
    front_latency = {e["run_id"]: e["metrics"]["latency_ms"] for e in report["front"]}
    for run in complete:
        if run.info.run_id in front_latency:
            assert run.data.metrics["latency_ms"] == front_latency[run.info.run_id]
