"""MLflow records: one parent run per search, one nested child run per trial.

Runs are found again by tags, not remembered in memory, so a resumed search (or a Ray
worker in another process) reattaches to the runs it already has instead of adding
duplicates: the parent carries ``sparsearch.search_key``, a child carries the same key
plus ``sparsearch.trial_key``. Nesting uses the ``mlflow.parentRunId`` tag, which is what
the MLflow UI reads.

With a ``sqlite:///DIR/mlflow.db`` URI, artifacts go to ``DIR/mlartifacts`` beside the
database (MLflow 3 has no file store; a server keeps its own artifact store).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sparsearch import mlflow_keys as keys

__all__ = ["Tracker", "artifact_root_for"]

SEARCH_KEY = keys.SEARCH_KEY
TRIAL_KEY = keys.TRIAL_KEY
PARENT = keys.PARENT_RUN
# The experiment kind whose UI layout opens on runs (model training), not on GenAI traces.
MODEL_TRAINING = "custom_model_development"


def artifact_root_for(uri: str) -> str | None:
    """Where a new experiment keeps artifacts: beside a sqlite database, else the server's."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):]).expanduser().resolve()
        return (db.parent / "mlartifacts").as_uri()
    return None


@contextlib.contextmanager
def _first_open_lock(uri: str) -> Iterator[None]:
    """Serialises opening a sqlite database across processes (``<db>.lock`` beside it).

    MLflow creates a new database's tables on first use, and two processes doing that at
    once (two searches started together on a fresh ``outputs/mlflow.db``) fail with "table
    already exists". Servers are left alone: they serialise this themselves.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri[len("sqlite:///"):]).expanduser()
    db.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not on Windows: the race stays MLflow's
        yield
        return
    with open(db.with_name(db.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _param_name(key: Any) -> str:
    """MLflow refuses the glob characters of layer groups (``layers.layer1.*.sparsity``)."""
    return re.sub(r"[^\w\-. :/]", "_", str(key))


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:6000]


class Tracker:
    """Writes a search into one MLflow experiment through ``MlflowClient``.

    Args:
        uri: tracking URI (``sqlite:///...`` or ``http://...``).
        experiment: experiment name; created when missing.
    """

    def __init__(self, uri: str, experiment: str) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        with _first_open_lock(uri):
            self.client = MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                try:
                    self.experiment_id = self.client.create_experiment(
                        experiment, artifact_location=artifact_root_for(uri),
                        tags={keys.EXPERIMENT_KIND: MODEL_TRAINING})
                except Exception:
                    # Another process (a server's client) created it between look-up and
                    # create.
                    found = self.client.get_experiment_by_name(experiment)
                    if found is None:
                        raise
                    self.experiment_id = found.experiment_id
            else:
                self.experiment_id = found.experiment_id
                if keys.EXPERIMENT_KIND not in found.tags:
                    self.client.set_experiment_tag(self.experiment_id, keys.EXPERIMENT_KIND,
                                                   MODEL_TRAINING)

    def run_url(self, run_id: str, *, ui: str = "http://127.0.0.1:5000") -> str:
        """Where the MLflow UI shows a run: on the server itself, or on ``mlflow ui`` (``ui``)
        for a database."""
        base = self.uri.rstrip("/") if self.uri.startswith(("http://", "https://")) else ui
        # MLflow 3.17's UI picks its GenAI or model-training layout from this parameter, else
        # from the browser's last choice (GenAI at first), whatever the experiment's kind.
        return (f"{base}/#/experiments/{self.experiment_id}/runs/{run_id}"
                f"?workflowType=machine_learning")

    def log_dataset(self, run_id: str, *, name: str, splits: dict[str, tuple[Any, Any]],
                    source: str | None) -> None:
        """Logs each split as a dataset input of the run (its rows, shape and digest show in
        the UI's Datasets column); logging the same data again adds nothing.

        Args:
            run_id: the run.
            name: the dataset's name.
            splits: context (train, validation, test) -> (features, targets) numpy arrays.
            source: the local folder the data came from (None: a built-in set).
        """
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.numpy_dataset import from_numpy
        from mlflow.entities import DatasetInput, InputTag

        inputs = []
        for context, (features, targets) in splits.items():
            dataset = from_numpy(
                features, targets=targets, name=name,
                source=source if source else CodeDatasetSource({"dataset": name}))
            inputs.append(DatasetInput(dataset._to_mlflow_entity(),
                                       tags=[InputTag("mlflow.data.context", context)]))
        self.client.log_inputs(run_id, datasets=inputs)

    def _find(self, filter_string: str) -> str | None:
        runs = self.client.search_runs([self.experiment_id], filter_string=filter_string,
                                       max_results=2, order_by=["attributes.start_time ASC"])
        return runs[0].info.run_id if runs else None

    def start_search(self, *, search_key: str, run_name: str, params: dict[str, Any],
                     tags: dict[str, str] | None = None) -> str:
        """Creates the search's parent run, or reopens the one with the same key."""
        run_id = self._find(f"tags.`{SEARCH_KEY}` = '{search_key}' "
                            f"and tags.`sparsearch.role` = 'search'")
        if run_id is None:
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags={
                SEARCH_KEY: search_key, keys.ROLE: "search", **(tags or {})})
            run_id = run.info.run_id
            self.log_params(run_id, params)
        else:
            self.client.update_run(run_id, status="RUNNING")
        return run_id

    def trial_run(self, *, parent_id: str, search_key: str, trial_key: int,
                  run_name: str, tags: dict[str, Any] | None = None) -> str:
        """The child run of one trial: found by its key, created (with ``tags``) when missing."""
        run_id = self.trial_run_id(search_key, trial_key)
        if run_id is None:
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags={
                SEARCH_KEY: search_key, TRIAL_KEY: str(trial_key), PARENT: parent_id,
                keys.ROLE: "trial", **{k: str(v) for k, v in (tags or {}).items()}})
            run_id = run.info.run_id
        else:
            self.client.update_run(run_id, status="RUNNING")
        return run_id

    def trial_run_id(self, search_key: str, trial_key: int) -> str | None:
        """The child run of one trial, or None: one query for that run, not a listing of
        every run of the search (which costs seconds per call in a search of a thousand)."""
        return self._find(f"tags.`{SEARCH_KEY}` = '{search_key}' "
                          f"and tags.`{TRIAL_KEY}` = '{trial_key}'")

    def trial_runs(self, search_key: str) -> dict[int, str]:
        """All child runs of a search, by trial key."""
        return {key: run_id for key, (run_id, _) in self.trial_run_tags(search_key).items()}

    def trial_run_tags(self, search_key: str) -> dict[int, tuple[str, dict[str, str]]]:
        """All child runs of a search, by trial key: (run id, the run's tags)."""
        out: dict[int, tuple[str, dict[str, str]]] = {}
        page_token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{SEARCH_KEY}` = '{search_key}' "
                              f"and tags.`sparsearch.role` = 'trial'",
                max_results=1000, page_token=page_token)
            for run in page:
                out[int(run.data.tags[TRIAL_KEY])] = (run.info.run_id, dict(run.data.tags))
            page_token = page.token
            if not page_token:
                return out

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Logs params; logging the same values again (a resumed run) is a no-op in MLflow."""
        from mlflow.entities import Param

        batch = [Param(_param_name(k), _param_value(v)) for k, v in params.items()]
        for start in range(0, len(batch), 100):
            self.client.log_batch(run_id, params=batch[start:start + 100])

    def record(self, run_id: str, *, metrics: dict[str, float],
               series: list[tuple[str, float, int]], tags: dict[str, Any]) -> None:
        """Final metrics, per-epoch series and tags of a run, in as few writes as possible."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        points = [Metric(k, float(v), now, int(s)) for k, v, s in series]
        points += [Metric(str(k), float(v), now, 0) for k, v in metrics.items()]
        run_tags = [RunTag(str(k), str(v)) for k, v in tags.items()]
        for start in range(0, max(len(points), 1), 1000):
            self.client.log_batch(run_id, metrics=points[start:start + 1000],
                                  tags=run_tags if start == 0 else [])

    def log_metrics(self, run_id: str, metrics: dict[str, float], *, step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(str(k), float(v), now, step) for k, v in metrics.items()]
        for start in range(0, len(batch), 500):
            self.client.log_batch(run_id, metrics=batch[start:start + 500])

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(str(k), str(v)) for k, v in tags.items()])

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(run_id, str(path), artifact_path)

    def end_run(self, run_id: str, status: str) -> None:
        """status: FINISHED | FAILED | KILLED."""
        self.client.set_terminated(run_id, status=status)

    def fail_trial_run(self, search_key: str, trial_key: int, reason: str) -> None:
        """Ends a trial's run FAILED with its reason, when a worker died before it could;
        nothing if the trial never opened a run."""
        run_id = self.trial_run_id(search_key, trial_key)
        if run_id is not None:
            self.set_tags(run_id, {keys.STATUS: "failed",
                                   keys.FAIL_REASON: reason[:5000]})
            self.end_run(run_id, "FAILED")
