"""Searches started together on a fresh sqlite MLflow database: each process opens it (MLflow
creates its tables on first use) without tripping over the others."""

from __future__ import annotations

import multiprocessing as mp

import pytest

pytestmark = pytest.mark.slow


def _open(uri: str, experiment: str, queue) -> None:
    try:
        from sparsearch.tracking import Tracker

        tracker = Tracker(uri, experiment)
        queue.put(("ok", tracker.experiment_id))
    except Exception as err:  # reported to the test, which fails on it
        queue.put(("error", f"{type(err).__name__}: {err}"))


def test_processes_opening_a_fresh_database_at_once_all_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_open, args=(uri, "shared", queue)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(status == "ok" for status, _ in results), results
    # One experiment, found by all.
    assert len({value for _, value in results}) == 1, results
