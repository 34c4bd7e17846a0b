"""DASS with runner=ray: each unit (warm-up, lambda search, derived subnet) a Ray Tune
trial, the lambdas at once.

``DassStrategy`` driven by ``RayRunner`` (what the app composes for ``search=dass
runner=ray``) runs in this process against the two-node cluster: with one CPU per node, two
lambdas searched at once land on both nodes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import mlflow_uri

pytest.importorskip("sparsearch.search.dass")

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from sparsearch.config import register_configs, validate

    register_configs()
    GlobalHydra.instance().clear()
    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return validate(OmegaConf.to_object(hydra_compose(config_name="config",
                                                          overrides=overrides)))


def ray_nodes(address: str) -> list[dict]:
    """The cluster's nodes, from a short-lived connection (the runner closed its own)."""
    import ray

    ray.init(address=address, logging_level="ERROR")
    try:
        return ray.nodes()
    finally:
        ray.shutdown()


def run_dass_on_the_cluster(overrides: list[str], tmp_path: Path, address: str, *,
                            strategy: str = "dass"):
    """DASS (or ``strategy``) under the Ray runner on the cluster for a composed config, as
    the app composes them; a second call with the same ``tmp_path`` resumes the search in
    the same run dir.

    Returns:
        (setup, tracker, study, reported (key, status) pairs).
    """
    from sparsearch.runners import RUNNERS
    from sparsearch.search.setup import prepare_search
    from sparsearch.search.strategies import STRATEGIES
    from sparsearch.search.study import open_study
    from sparsearch.tracking import Tracker

    uri = mlflow_uri(tmp_path / "mlflow.db")
    cfg = compose(["name=tiny", f"search={strategy}", "train.epochs=2", "model.hidden=[32,32]",
                   "runner=ray", f"runner.address={address}", f"tracking.uri={uri}",
                   "export.enabled=false", *overrides])
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    setup = prepare_search(cfg, run_dir)
    tracker = Tracker(uri, setup.experiment)
    parent = tracker.start_search(search_key=setup.search_key, run_name="dass", params={})
    strategy_cls = STRATEGIES.get(strategy)
    study = open_study(name=setup.study_name, storage=None, run_dir=run_dir,
                       sampler=strategy_cls.sampler(cfg, offset=0), directions=setup.directions)
    reported: list[tuple[int, str]] = []
    driven = strategy_cls(setup, study, tracker=tracker, parent_run_id=parent,
                          on_trial=lambda key, status: reported.append((key, status)))
    RUNNERS.get("ray")(setup, tracker=tracker, parent_run_id=parent).run(driven)
    return setup, tracker, study, reported


def test_dass_lambdas_are_searched_as_parallel_ray_tasks(ray_cluster, tmp_path):
    import ray

    from sparsearch.search.dass import sweep_points

    setup, tracker, study, reported = run_dass_on_the_cluster([
        "search.n_trials=2", "search.dass.lambdas=[0.0,20.0]", "search.dass.refine=false",
        "search.dass.probe=false",
        "search.dass.warmup_epochs=1", "search.dass.search_epochs=2",
        "search.dass.finetune_epochs=1"], tmp_path, ray_cluster.address)
    assert not ray.is_initialized(), "the runner left its connection open"

    points = sweep_points(study)
    assert sorted(p.lam for p in points) == [0.0, 20.0]
    assert len({p.key for p in points}) == 2
    derived = [p for p in points if p.duplicate_of is None]
    assert len(derived) == 2, "lambda 0 and 20 should derive different subnets"
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "COMPLETE"]
    assert sorted(k for k, _ in reported) == sorted(p.key for p in derived)
    runs = tracker.trial_runs(setup.search_key)
    cluster = {n["NodeID"] for n in ray_nodes(ray_cluster.address)}
    # Searched on a worker of the cluster. Which node: Tune's choice (a worker that just
    # finished the warm-up may take the next lambda before a second worker has started).
    assert {tracker.client.get_run(runs[p.key]).data.tags["sparsearch.node_id"]
            for p in derived} <= cluster
    for p in derived:
        run = tracker.client.get_run(runs[p.key])
        assert run.data.params["strategy"] == "dass"
        assert float(run.data.params["dass.lambda"]) == p.lam
        # Trained on a worker of the cluster, not in this (the driver's) process.
        assert run.data.tags["sparsearch.train_node_id"] in cluster
        assert run.info.status == "FINISHED" and "train_s" in run.data.metrics

    # The warm-up ran once, on a worker, into the run dir's cache; resumed with a larger
    # budget, the search takes it from there (the file is not written again) and goes on.
    cache = tmp_path / "run" / "dass" / "warmup.pt"
    written = cache.stat().st_mtime_ns
    first = {p.key for p in points}
    setup, tracker, study, reported = run_dass_on_the_cluster([
        "search.n_trials=3", "search.dass.lambdas=[0.0,20.0,5.0]", "search.dass.refine=false",
        "search.dass.probe=false",
        "search.dass.warmup_epochs=1", "search.dass.search_epochs=2",
        "search.dass.finetune_epochs=1"], tmp_path, ray_cluster.address)
    assert cache.stat().st_mtime_ns == written
    assert sorted(p.lam for p in sweep_points(study)) == [0.0, 5.0, 20.0]
    # Lambdas 0 and 20 were not searched again (lambda 5 may derive a duplicate, which
    # trains nothing and reports nothing).
    assert not first & {k for k, _ in reported}


def test_dass_under_ray_retrains_the_front_once_the_sweep_is_complete(ray_cluster, tmp_path):
    """One sparse choice (2:4) makes the sweep converge at once; budget left goes to the
    retrain phase (the front under the space's other recipe), as with runner=local."""
    from sparsearch.search.dass import sweep_points

    space = tmp_path / "space.yaml"
    space.write_text("params:\n  pattern: {fixed: nm}\n  nm: '2:4'\n"
                     "  recipe: {choice: [one_shot, gradual]}\n")
    setup, tracker, study, reported = run_dass_on_the_cluster([
        f"space={space}", "search.n_trials=3", "search.dass.lambdas=[0.0]",
        "search.dass.levels=2", "search.dass.warmup_epochs=1", "search.dass.search_epochs=1",
        "search.dass.finetune_epochs=0", "search.dass.probe=false"], tmp_path,
        ray_cluster.address)

    points = sweep_points(study)
    retrains = [p for p in points if p.retrain_of is not None]
    assert retrains, [p.to_dict() for p in points]
    sources = {p.key for p in points if p.retrain_of is None and p.duplicate_of is None}
    assert {p.retrain_of for p in retrains} <= sources
    assert all(p.accuracy is not None for p in retrains)
    runs = tracker.trial_runs(setup.search_key)
    for p in retrains:
        assert (p.key, "complete") in reported
        run = tracker.client.get_run(runs[p.key])
        assert run.data.params["recipe"] == "gradual"


def test_dass_tpe_solves_targets_as_ray_tasks(ray_cluster, tmp_path):
    """dass_tpe under Ray: two TPE trials at once, each its own lambda searches and
    training on the cluster, every asked trial told (none left running)."""
    setup, tracker, study, reported = run_dass_on_the_cluster([
        "search.n_trials=2", "search.n_startup_trials=2", "search.dass.levels=3",
        "search.dass.warmup_epochs=1", "search.dass.search_epochs=1",
        "search.dass.finetune_epochs=1", "search.dass.alpha_lr=0.1",
        "search.dass.max_bisections=2"], tmp_path, ray_cluster.address, strategy="dass_tpe")
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "COMPLETE"]
    assert sorted(k for k, _ in reported) == sorted(t.number for t in trials)
    cluster = {n["NodeID"] for n in ray_nodes(ray_cluster.address)}
    runs = tracker.trial_runs(setup.search_key)
    for t in trials:
        run = tracker.client.get_run(runs[t.number])
        assert run.data.params["strategy"] == "dass_tpe"
        assert float(run.data.params["target_density"]) == t.params["target_density"]
        assert run.data.tags["sparsearch.train_node_id"] in cluster
