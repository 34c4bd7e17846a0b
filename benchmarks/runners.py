"""Runner benchmark: the same 16-trial search under runner=local and runner=ray (1 and 2 at once).

Each variant runs the same seeded random search over ``digits_mlp`` (so the same 16
subnets, checked) on a fresh run dir and MLflow database, with one CPU and one torch thread
per trial. Only the runner call is timed (``RUNNERS.get(kind)(...).run(strategy)``): the
dense baseline and the Pareto report around it are the same for every runner.

Per variant it reports trials per minute, start-up (from the call to the first trial's MLflow
run: for Ray that is ``ray.init``, Tune's set-up and the first worker's imports), the bare
training time of the trials (``train_s`` in their metrics) and the overhead against it:
``(slots * time - sum(train_s)) / sum(train_s)``, where slots is the number of trials run at
once, both after start-up ("steady") and over the whole call ("all-in"). It also times
``ray.init`` + ``ray.shutdown`` of a local Ray on its own.

    python benchmarks/runners.py [--trials 16] [--epochs 40] [--hidden 512]
                                 [--out outputs/bench/runners.json]

Takes about 5 minutes on 2 idle CPU cores. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# (name, overrides, trials run at once)
VARIANTS: list[tuple[str, list[str], int]] = [
    ("local", ["runner=local"], 1),
    ("ray x1", ["runner=ray", "runner.max_concurrent_trials=1", "runner.num_cpus=2"], 1),
    ("ray x2", ["runner=ray", "runner.max_concurrent_trials=2", "runner.num_cpus=2"], 2),
]


def compose(overrides: list[str]) -> Any:
    """The typed config the command would build from these overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from sparsearch.config import register_configs

    conf_dir = Path(__file__).resolve().parents[1] / "conf"
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return OmegaConf.to_object(hydra_compose(config_name="config", overrides=overrides))


def run_variant(name: str, overrides: list[str], slots: int, *, base: list[str],
                root: Path) -> dict[str, Any]:
    """Runs one variant's search and measures its runner call."""
    from mlflow import MlflowClient

    from sparsearch.config import validate
    from sparsearch.runners import RUNNERS
    from sparsearch.search.report import dense_baseline
    from sparsearch.search.setup import prepare_search
    from sparsearch.search.strategies import STRATEGIES, create_sampler
    from sparsearch.search.study import open_study
    from sparsearch.tracking import Tracker

    folder = root / name.replace(" ", "")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    cfg = validate(compose([*overrides, f"tracking.uri={uri}", *base]))
    run_dir = folder / "run"
    run_dir.mkdir()
    setup = prepare_search(cfg, run_dir)
    tracker = Tracker(uri, setup.experiment)
    parent = tracker.start_search(search_key=setup.search_key, run_name=name, params={})
    # As the app does before any runner (and it warms this process's torch, as there).
    dense_baseline(setup)
    study = open_study(name=setup.study_name, storage=None, run_dir=run_dir,
                       sampler=create_sampler("random", seed=cfg.seed),
                       directions=setup.directions)
    started_ms = time.time() * 1000
    started = time.perf_counter()
    strategy = STRATEGIES.get(cfg.search.strategy)(setup, study, tracker=tracker,
                                                   parent_run_id=parent,
                                                   on_trial=lambda key, status: None)
    RUNNERS.get(cfg.runner.kind)(setup, tracker=tracker, parent_run_id=parent).run(strategy)
    wall = time.perf_counter() - started
    tracker.end_run(parent, "FINISHED")

    client = MlflowClient(uri)
    children = [r for r in client.search_runs([tracker.experiment_id], max_results=1000)
                if r.data.tags.get("sparsearch.role") == "trial"]
    trials = study.get_trials(deepcopy=False)
    train = [float(t.user_attrs["sparsearch.metrics"]["train_s"]) for t in trials]
    startup = (min(r.info.start_time for r in children) - started_ms) / 1000
    steady = wall - startup
    n = len(trials)
    specs = sorted((run_dir / "trials" / f"{t.number:05d}" / "spec.json").read_text()
                   for t in trials)
    return {
        "runner": name, "slots": slots, "trials": n,
        "complete": sum(1 for t in trials if t.state.name == "COMPLETE"),
        "mlflow_runs": len(children), "wall_s": wall, "startup_s": startup,
        "trials_per_min": 60 * n / wall, "steady_trials_per_min": 60 * n / steady,
        "train_s_sum": sum(train), "train_s_mean": sum(train) / n,
        "overhead_per_trial_s": (slots * steady - sum(train)) / n,
        "overhead_steady": (slots * steady - sum(train)) / sum(train),
        "overhead_all_in": (slots * wall - sum(train)) / sum(train),
        "specs": specs,
    }


def ray_init_cost(num_cpus: int) -> dict[str, float]:
    """Seconds to start and to stop a local Ray, as runner=ray with address=null does."""
    import logging

    import ray

    started = time.perf_counter()
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
             logging_level=logging.WARNING)
    init = time.perf_counter() - started
    started = time.perf_counter()
    ray.shutdown()
    return {"ray_init_s": init, "ray_shutdown_s": time.perf_counter() - started}


def print_table(rows: list[dict[str, Any]], ray_cost: dict[str, float]) -> None:
    header = (f"{'runner':<8}{'trials':>7}{'wall s':>9}{'start-up s':>12}{'trials/min':>12}"
              f"{'steady/min':>12}{'sum train s':>13}{'ovh/trial s':>13}{'ovh steady':>12}"
              f"{'ovh all-in':>12}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['runner']:<8}{r['trials']:>7}{r['wall_s']:>9.1f}{r['startup_s']:>12.1f}"
              f"{r['trials_per_min']:>12.1f}{r['steady_trials_per_min']:>12.1f}"
              f"{r['train_s_sum']:>13.1f}{r['overhead_per_trial_s']:>13.2f}"
              f"{100 * r['overhead_steady']:>11.1f}%{100 * r['overhead_all_in']:>11.1f}%")
    print(f"ray.init (local, 2 CPUs) {ray_cost['ray_init_s']:.1f} s, "
          f"ray.shutdown {ray_cost['ray_shutdown_s']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/runners.json"))
    args = parser.parse_args(argv)

    base = ["name=bench_runners", "space=digits_mlp", "search=random", "seed=0",
            f"search.n_trials={args.trials}", f"train.epochs={args.epochs}",
            f"model.hidden=[{args.hidden},{args.hidden}]", "train.threads=1",
            "runner.resources_per_trial={cpu: 1.0, gpu: 0.0}"]
    root = args.out.parent / "runners"
    load_before = os.getloadavg()
    rows = [run_variant(name, overrides, slots, base=base, root=root)
            for name, overrides, slots in VARIANTS]
    ray_cost = ray_init_cost(num_cpus=2)
    load_after = os.getloadavg()
    print_table(rows, ray_cost)

    same_subnets = all(r["specs"] == rows[0]["specs"] for r in rows)
    by_name = {r["runner"]: r for r in rows}
    speedup = by_name["ray x2"]["trials_per_min"] / by_name["ray x1"]["trials_per_min"]
    steady_speedup = (by_name["ray x2"]["steady_trials_per_min"]
                      / by_name["ray x1"]["steady_trials_per_min"])
    goals = {
        "ray x2 >= 1.7x ray x1 (all-in)": speedup >= 1.7,
        "ray x2 >= 1.7x ray x1 (steady)": steady_speedup >= 1.7,
        "local overhead <= 5% (steady)": by_name["local"]["overhead_steady"] <= 0.05,
        "ray x1 overhead <= 15% (steady)": by_name["ray x1"]["overhead_steady"] <= 0.15,
        "ray x2 overhead <= 15% (steady)": by_name["ray x2"]["overhead_steady"] <= 0.15,
        "ray x1 overhead <= 15% (all-in)": by_name["ray x1"]["overhead_all_in"] <= 0.15,
        "ray x2 overhead <= 15% (all-in)": by_name["ray x2"]["overhead_all_in"] <= 0.15,
    }
    print(f"ray x2 / ray x1 throughput: {speedup:.2f}x all-in, {steady_speedup:.2f}x steady; "
          f"same {args.trials} subnets under every runner: {same_subnets}")
    for goal, met in goals.items():
        print(f"  {'met    ' if met else 'MISSED '} {goal}")
    print(f"load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f} "
          f"on {os.cpu_count()} CPUs")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "config": base, "cpus": os.cpu_count(), "load_before": load_before,
        "load_after": load_after, "ray": ray_cost, "speedup_all_in": speedup,
        "speedup_steady": steady_speedup, "same_subnets": same_subnets, "goals": goals,
        "runners": [{k: v for k, v in r.items() if k != "specs"} for r in rows],
    }, indent=1))
    print(f"wrote {args.out}")
    return 0 if same_subnets else 1


if __name__ == "__main__":
    sys.exit(main())
