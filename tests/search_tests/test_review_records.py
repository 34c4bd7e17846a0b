"""What a reviewer finds in MLflow after a search: read back through MLflow's own client."""

from __future__ import annotations

import re

import pytest
from mlflow import MlflowClient

from tests.conftest import run_cli, tiny_search_args

pytestmark = pytest.mark.slow


def test_search_opens_on_its_results_and_stays_quiet(tmp_path):
    result = run_cli([*tiny_search_args(tmp_path, seeded=True), "search.n_trials=3", "train.epochs=1",
                      "export.batch_sizes=[1]"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    # The UI opens a model-training experiment on its runs, not on GenAI traces.
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags["sparsearch.role"] == "search")
    children = [r for r in runs if r.data.tags["sparsearch.role"] == "trial"]

    # The review line leads to the parent run itself.
    review = next(ln for ln in result.stdout.splitlines() if ln.startswith("review:"))
    assert review.endswith(f"/#/experiments/{experiment.experiment_id}/runs/"
                           f"{parent.info.run_id}?workflowType=machine_learning")

    note = parent.data.tags["mlflow.note.content"]
    assert f"Hypervolume **{parent.data.metrics['hypervolume']:.4f}**" in note
    assert "`tpe` search **tiny**; budget 3 trials: 3 complete, 0 failed" in note
    front = [c for c in children if c.data.metrics["pareto"] == 1.0]
    table_rows = [ln for ln in note.splitlines() if re.match(r"\| \d+ \| \d+ \|", ln)]
    assert len(table_rows) == len(front) >= 1
    assert sorted(c.data.metrics["pareto_rank"] for c in front) == list(range(len(front)))
    best = next(c for c in front if c.data.metrics["pareto_rank"] == 0)
    assert best.data.tags["mlflow.note.content"].startswith(
        "Pareto rank **0** of the `tpe` search **tiny**: accuracy ")
    # Every child has its objectives and the front marker as metrics: chartable together.
    assert all({"accuracy", "density", "pareto"} <= set(c.data.metrics) for c in children)

    inputs = {i.tags[0].value: i.dataset for i in parent.inputs.dataset_inputs}
    assert set(inputs) == {"train", "validation", "test"}
    assert all(d.name == "digits" and len(d.digest) >= 8 for d in inputs.values())
    sizes = {ctx: int(re.search(r'"targets_shape": \[(\d+)\]', d.profile).group(1))
             for ctx, d in inputs.items()}
    assert sum(sizes.values()) == 1797 and f"{sizes['train']}/{sizes['validation']}" in note

    # The registry's messages went to the run's log file, not to the terminal.
    assert client.get_model_version_by_alias("tiny-tpe", "pareto-0")
    terminal = result.stdout + result.stderr
    assert "Successfully registered model" not in terminal
    assert "Created version" not in terminal
    log = next((tmp_path / "run").glob("*.log")).read_text()
    assert "Successfully registered model 'tiny-tpe'" in log
