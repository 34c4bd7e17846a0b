"""Finding a trial's MLflow run: by its keys, in a real database with other searches."""

from __future__ import annotations

from tests.conftest import mlflow_uri


def test_trial_run_id_finds_one_run_by_search_and_trial_key(tmp_path):
    from sparsearch.tracking import Tracker

    tracker = Tracker(mlflow_uri(tmp_path / "mlflow.db"), "lookup")
    ids = {}
    for search in ("a", "b"):
        parent = tracker.start_search(search_key=search, run_name=search, params={})
        for key in range(3):
            ids[search, key] = tracker.trial_run(parent_id=parent, search_key=search,
                                                 trial_key=key, run_name=f"{search}{key}")
    assert len(set(ids.values())) == 6
    for (search, key), run_id in ids.items():
        assert tracker.trial_run_id(search, key) == run_id
    assert tracker.trial_run_id("a", 3) is None and tracker.trial_run_id("c", 0) is None
    # The listing agrees with the lookups, and its tags are the runs' own.
    tagged = tracker.trial_run_tags("b")
    assert {k: run_id for k, (run_id, _) in tagged.items()} == {
        k: ids["b", k] for k in range(3)} == tracker.trial_runs("b")
    assert all(tags["sparsearch.trial_key"] == str(k) for k, (_, tags) in tagged.items())
