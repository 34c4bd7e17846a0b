"""A local search killed with SIGKILL mid-search resumes on rerun: finished trials are not
run again, none is recorded twice, and the budget ends up exactly spent."""

from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient

from tests.runners_tests.conftest import (
    count_complete,
    run_cli_watched,
    search_args,
    search_runs,
    start_cli,
    study_trials,
)

pytestmark = pytest.mark.slow


def test_a_killed_local_search_resumes_without_rerunning_or_duplicating(tmp_path):
    args = search_args(tmp_path, n_trials=6, epochs=12, hidden="[256,256]")
    run_dir = tmp_path / "run"
    first = start_cli(args, cwd=tmp_path, log_name="first.log")
    deadline = time.monotonic() + 300
    while count_complete(run_dir) < 2:
        assert first.proc.poll() is None, f"ended before two trials:\n{first.output()[-3000:]}"
        assert time.monotonic() < deadline, "timed out waiting for two finished trials"
        time.sleep(0.05)
    first.kill()

    done = {t.number for t in study_trials(run_dir) if t.state.name == "COMPLETE"}
    assert 2 <= len(done) < 6, done
    _, before = search_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    before_ids = {int(r.data.tags["sparsearch.trial_key"]): r.info.run_id for r in before}
    stamps = {k: (run_dir / "trials" / f"{k:05d}" / "result.json").stat().st_mtime_ns
              for k in done}

    code, out = run_cli_watched(args, cwd=tmp_path, log_name="second.log")
    assert code == 0, out[-3000:]
    assert "Pareto-optimal subnets of tiny (random, 6 complete" in out

    parents, children = search_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    keys = [int(c.data.tags["sparsearch.trial_key"]) for c in children]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 6, keys
    by_key = {int(c.data.tags["sparsearch.trial_key"]): c for c in children}
    assert all(c.info.status == "FINISHED" for c in children)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for key in done:
        # Not trained again: the same run with one value per metric, the same files.
        assert by_key[key].info.run_id == before_ids[key]
        assert len(client.get_metric_history(by_key[key].info.run_id, "train_s")) == 1
        result = run_dir / "trials" / f"{key:05d}" / "result.json"
        assert result.stat().st_mtime_ns == stamps[key]
    for key, run_id in before_ids.items():
        # A trial cut off by the kill ran again under its own MLflow run.
        assert by_key[key].info.run_id == run_id
    counted = [t for t in study_trials(run_dir) if not t.user_attrs.get("sparsearch.stale")]
    assert len(counted) == 6 and all(t.state.name == "COMPLETE" for t in counted)
