"""runner=ray on a real two-node cluster on loopback: placement, a dying worker, a dying driver.

The cluster (``ray_cluster``) is started once for these tests and stopped at the end; each
search joins it with ``runner.address=127.0.0.1:PORT``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.runners_tests.conftest import (
    alive,
    count_complete,
    mlflow_trial_run_exists,
    run_cli_watched,
    search_args,
    search_runs,
    start_cli,
    study_trials,
)

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _wait_for(condition, *, timeout: float, what: str, command=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if command is not None and command.proc.poll() is not None:
            raise AssertionError(f"the search ended before {what}:\n{command.output()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        if command is not None:
            command.watch()
        time.sleep(0.1)


def _children_by_key(tmp: Path) -> dict[int, object]:
    parents, children = search_runs(f"sqlite:///{tmp / 'mlflow.db'}")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    keys = [int(c.data.tags["sparsearch.trial_key"]) for c in children]
    assert len(keys) == len(set(keys)), f"a trial has two MLflow runs: {sorted(keys)}"
    return {int(c.data.tags["sparsearch.trial_key"]): c for c in children}


def test_trials_run_on_both_nodes(ray_cluster, tmp_path):
    # Short trials are enough: every slot starts a trial at once, one per node.
    code, out = run_cli_watched(
        [*search_args(tmp_path, n_trials=4), "runner=ray",
         f"runner.address={ray_cluster.address}"], cwd=tmp_path)
    assert code == 0, out[-3000:]
    trials = study_trials(tmp_path / "run")
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    nodes = {t.user_attrs["sparsearch.node_id"] for t in trials}
    assert len(nodes) == 2, f"all trials ran on one node: {nodes}"
    # Tune's own record of each trial carries the node id too.
    session = json.loads((tmp_path / "run" / "tune_session.json").read_text())
    results = [json.loads(p.read_text().splitlines()[-1])
               for p in Path(session["experiment"]).glob("trial-*/result.json")]
    assert {r["sparsearch.node_id"] for r in results} == nodes
    assert len(_children_by_key(tmp_path)) == 4


def _pid(pid_file: Path) -> int | None:
    text = pid_file.read_text()
    return int(text) if text.strip() else None


def _kill_worker(pid_file: Path, tmp: Path, command) -> int:
    """Kills the Ray worker of the trial that wrote ``pid_file``, once its MLflow run exists."""
    key, pid = int(pid_file.parent.name), int(pid_file.read_text())
    # Once the run exists, a retry must find and reuse it rather than add a second one.
    _wait_for(lambda: mlflow_trial_run_exists(tmp, key), timeout=120,
              what=f"trial {key}'s MLflow run", command=command)
    assert alive(pid) and "ray::" in Path(f"/proc/{pid}/cmdline").read_text()
    assert not (pid_file.parent / "result.json").exists(), f"trial {key} ended before the kill"
    os.kill(pid, 9)
    return pid


def test_killed_workers_are_retried_then_failed_with_a_reason(ray_cluster, tmp_path):
    # runner.max_failures=1: trial A's worker is killed twice (the retry, then the failure),
    # trial B's once (the retry completes it): one complete, one failed, exit 0.
    # Trials of tens of seconds even on idle cores, so each is still training when it is
    # killed (25 epochs of a 256-wide MLP were over before the second kill under load).
    command = start_cli(
        [*search_args(tmp_path, n_trials=2, epochs=120, hidden="[512,512]"), "runner=ray",
         f"runner.address={ray_cluster.address}", "runner.max_failures=1"],
        cwd=tmp_path, env={"SPARSEARCH_RAY_PID_FILES": "1"})
    trials_dir = tmp_path / "run" / "trials"
    # Both nodes start a trial at once, each in a fresh worker (seconds of imports).
    _wait_for(lambda: len(list(trials_dir.glob("*/worker.pid"))) >= 2, timeout=240,
              what="two trials to start", command=command)
    file_a, file_b = sorted(trials_dir.glob("*/worker.pid"))[:2]
    key_a, key_b = int(file_a.parent.name), int(file_b.parent.name)
    first_a = _kill_worker(file_a, tmp_path, command)
    first_b = _kill_worker(file_b, tmp_path, command)
    _wait_for(lambda: _pid(file_a) not in (None, first_a), timeout=240,
              what=f"trial {key_a} to run again", command=command)
    _kill_worker(file_a, tmp_path, command)
    code = command.wait()
    assert code == 0, command.output()[-3000:]
    assert "Pareto-optimal subnets of tiny (random, 1 complete, 1 failed)" in command.output()

    assert _pid(file_b) != first_b, f"trial {key_b} did not run again"
    trials = {t.number: t for t in study_trials(tmp_path / "run")}
    assert sorted(trials) == [0, 1]
    assert trials[key_b].state.name == "COMPLETE"
    assert trials[key_a].state.name == "FAIL"
    assert "worker died 2 time(s)" in trials[key_a].user_attrs["sparsearch.fail_reason"]
    runs = _children_by_key(tmp_path)
    assert sorted(runs) == [0, 1]
    assert runs[key_a].info.status == "FAILED"
    assert "worker died" in runs[key_a].data.tags["sparsearch.fail_reason"]
    assert runs[key_b].info.status == "FINISHED"


def test_a_killed_driver_resumes_without_rerunning_or_duplicating(ray_cluster, tmp_path):
    args = [*search_args(tmp_path, n_trials=6, epochs=12, hidden="[256,256]"), "runner=ray",
            f"runner.address={ray_cluster.address}"]
    run_dir = tmp_path / "run"
    first = start_cli(args, cwd=tmp_path, log_name="first.log")
    _wait_for(lambda: count_complete(run_dir) >= 2, timeout=300,
              what="two finished trials", command=first)
    first.kill()

    done = {t.number for t in study_trials(run_dir) if t.state.name == "COMPLETE"}
    assert 2 <= len(done) < 6
    before_runs = _children_by_key_unchecked(tmp_path)
    stamps = {k: (run_dir / "trials" / f"{k:05d}" / "result.json").stat().st_mtime_ns
              for k in done}
    experiment = json.loads((run_dir / "tune_session.json").read_text())["experiment"]

    code, out = run_cli_watched(args, cwd=tmp_path, log_name="second.log")
    assert code == 0, out[-3000:]
    assert "Pareto-optimal subnets of tiny (random, 6 complete" in out

    # Tune's experiment was restored, not started anew.
    session = json.loads((run_dir / "tune_session.json").read_text())
    assert session == {"experiment": experiment, "finished": True}
    assert len(list(Path(experiment).glob("experiment_state-*.json"))) == 2
    # Finished trials did not run again: one Tune trial each, the same MLflow run with one
    # value per metric, the same files.
    after = _children_by_key(tmp_path)
    assert len(after) == 6
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for key in done:
        assert len(list(Path(experiment).glob(f"trial-{key:05d}-*"))) == 1
        assert after[key].info.run_id == before_runs[key].info.run_id
        assert len(client.get_metric_history(after[key].info.run_id, "train_s")) == 1
        result = run_dir / "trials" / f"{key:05d}" / "result.json"
        assert result.stat().st_mtime_ns == stamps[key]
    assert all(r.info.status == "FINISHED" for r in after.values())
    trials = study_trials(run_dir)
    counted = [t for t in trials if not t.user_attrs.get("sparsearch.stale")]
    assert len(counted) == 6 and all(t.state.name == "COMPLETE" for t in counted)


def _children_by_key_unchecked(tmp: Path) -> dict[int, object]:
    """Child runs by key while the parent may still be open (right after the kill)."""
    _, children = search_runs(f"sqlite:///{tmp / 'mlflow.db'}")
    return {int(c.data.tags["sparsearch.trial_key"]): c for c in children}
