"""An export logged to a real MLflow run (sqlite) and registry, loaded back through MLflow."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from sparsearch.export import load_registered, log_export, save

from .conftest import FAST, assert_close, mlp_all_formats


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """One real sqlite tracking DB for the module (creating its tables takes seconds)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("exports", artifact_location=str(root / "artifacts"))
    mlflow.set_experiment(experiment_id=experiment)
    yield uri
    mlflow.set_tracking_uri(previous)


def test_log_register_alias_and_load_back(tmp_path, tracking):
    model = mlp_all_formats()
    path = save(model, None, tmp_path / "export", **FAST)
    with mlflow.start_run(run_name="trial-3") as run:
        mlflow.log_metric("accuracy", 0.9)
    registered = log_export(path, run_id=run.info.run_id, registered_model_name="digits-mlp",
                            alias="pareto-fastest", tracking_uri=tracking,
                            artifact_name="subnet nm1:8")
    assert registered.model_uri == "models:/digits-mlp@pareto-fastest"
    assert registered.version == "1" and registered.run_id == run.info.run_id
    client = MlflowClient(tracking)
    assert str(client.get_model_version_by_alias("digits-mlp", "pareto-fastest").version) == "1"
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id, "export")}
    assert artifacts == {"export/manifest.json", "export/weights.safetensors"}
    assert client.get_run(run.info.run_id).info.status == "FINISHED"

    x = torch.randn(40, 64)
    with torch.no_grad():
        ref = model(x)
    pyfunc = mlflow.pyfunc.load_model(registered.model_uri)
    assert_close(torch.from_numpy(pyfunc.predict(x.numpy())), ref)
    loaded = load_registered(registered.model_uri)
    with torch.no_grad():
        assert_close(loaded(x), ref)

    again = log_export(path, run_id=run.info.run_id, registered_model_name="digits-mlp",
                       alias="pareto-fastest")
    assert again.version == "2"
    assert str(client.get_model_version_by_alias("digits-mlp", "pareto-fastest").version) == "2"


def test_logging_inside_the_active_run(tmp_path, tracking):
    path = save(mlp_all_formats(), None, tmp_path / "export", tune=False)
    with mlflow.start_run() as run:
        registered = log_export(path, run_id=run.info.run_id, registered_model_name="second",
                                alias="best")
        assert mlflow.active_run().info.run_id == run.info.run_id
    pyfunc = mlflow.pyfunc.load_model(registered.model_uri)
    assert pyfunc.predict(np.zeros((2, 64), dtype=np.float32)).shape == (2, 10)
