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
        time.sleep(0.2)


def _children_by_key(tmp: Path) -> dict[int, object]:
    parents, children = search_runs(f"sqlite:///{tmp / 'mlflow.db'}")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    keys = [int(c.data.tags["sparsearch.trial_key"]) for c in children]
    assert len(keys) == len(set(keys)), f"a trial has two MLflow runs: {sorted(keys)}"
    return {int(c.data.tags["sparsearch.trial_key"]): c for c in children}


def test_trials_run_on_both_nodes(ray_cluster, tmp_path):
    code, out = run_cli_watched(
        [*search_args(tmp_path, n_trials=4, epochs=8, hidden="[128,128]"), "runner=ray",
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


def test_a_killed_worker_is_retried_and_a_diverging_trial_fails(ray_cluster, tmp_path):
    # lr=1e12 diverges: with seed 3 the random sampler draws it for some of the 4 trials.
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  sparsity: {float: [0.5, 0.9]}\n"
                     "  lr: {choice: [0.01, 1.0e+12]}\n")
    command = start_cli(
        [*search_args(tmp_path, n_trials=4, epochs=8, hidden="[128,128]"), f"space={space}",
         "seed=3", "runner=ray", f"runner.address={ray_cluster.address}"],
        cwd=tmp_path, env={"SPARSEARCH_RAY_PID_FILES": "1"})
    trials_dir = tmp_path / "run" / "trials"
    _wait_for(lambda: any(trials_dir.glob("*/worker.pid")), timeout=240,
              what="a trial to start", command=command)
    pid_file = next(trials_dir.glob("*/worker.pid"))
    key, pid = int(pid_file.parent.name), int(pid_file.read_text())
    # Kill it once its MLflow run exists, so the retry must reuse that run.
    _wait_for(lambda: mlflow_trial_run_exists(tmp_path, key), timeout=120,
              what="the trial's MLflow run", command=command)
    assert alive(pid) and "ray::" in Path(f"/proc/{pid}/cmdline").read_text()
    assert not (pid_file.parent / "result.json").exists(), "the trial ended before the kill"
    os.kill(pid, 9)
    code = command.wait()
    assert code == 0, command.output()[-3000:]

    assert int(pid_file.read_text()) != pid, "the killed trial did not run again"
    trials = {t.number: t for t in study_trials(tmp_path / "run")}
    assert sorted(trials) == [0, 1, 2, 3]
    killed = trials[key]
    assert killed.state.name in ("COMPLETE", "FAIL")
    if killed.state.name == "FAIL":
        assert "diverged" in killed.user_attrs["sparsearch.fail_reason"]
    failed = [t for t in trials.values() if t.state.name == "FAIL"]
    assert failed and len(failed) < 4, "seed 3 should give both diverging and healthy trials"
    assert all("diverged" in t.user_attrs["sparsearch.fail_reason"] for t in failed)

    runs = _children_by_key(tmp_path)
    assert sorted(runs) == [0, 1, 2, 3]
    for number, trial in trials.items():
        run = runs[number]
        if trial.state.name == "COMPLETE":
            assert run.info.status == "FINISHED"
        else:
            assert run.info.status == "FAILED"
            assert "diverged" in run.data.tags["sparsearch.fail_reason"]


def test_a_killed_driver_resumes_without_rerunning_or_duplicating(ray_cluster, tmp_path):
    args = [*search_args(tmp_path, n_trials=6, epochs=8, hidden="[128,128]"), "runner=ray",
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
    # Finished trials did not run again: same MLflow run, same end, same files.
    after = _children_by_key(tmp_path)
    assert len(after) == 6
    for key in done:
        assert after[key].info.run_id == before_runs[key].info.run_id
        assert after[key].info.end_time == before_runs[key].info.end_time
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
