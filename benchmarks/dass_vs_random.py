"""DASS against random search on an equal wall-clock budget (digits macro space).

The DASS paper (Mousavi et al., arXiv 2207.06968) claims differentiable, sparsity-aware
search finds better sparse networks; the random-search paper (Farahani, arXiv 2403.08265)
makes random search the neutral baseline any such claim must beat. Per seed this runs the
real command ``python -m sparsearch +experiment=digits_dass_vs_random`` once per strategy,
as ``search.compare`` does (``<run dir>/<strategy>/``, one MLflow experiment, one dense
baseline trained here beforehand so both have the same hypervolume reference) but in a
process of its own, so neither pays the other's start-up; random goes first on even seeds,
dass on odd ones, so slow drifts in machine load hit both. ``search.timeout_s`` is the
largest budget. Both strategies are budget-agnostic (their
schedule never reads the timeout except to stop), so the hypervolume each reaches by time
t, read from its study's trial completion times and counted from its MLflow parent run's
start, is what a run with budget t reaches. It reports the hypervolume of each method at
each budget (mean +- std over seeds), the trials by then, the time each needs to reach
random search's hypervolume at the largest budget, and the final fronts' hypervolume with
their test accuracy (what of the val hypervolume survives a held-out split).

    python benchmarks/dass_vs_random.py [--seeds 0 1 2] [--budgets 60 180 600]
                                        [--threads 1] [--parallel]
                                        [--out outputs/bench/dass_vs_random.json]

Prints a table and writes JSON. Takes about 2 x max(budgets) + 30 s per seed (the full
grid: about 65 minutes on 2 CPU cores), half that with ``--parallel`` (both strategies at
once, one thread each).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

EXPERIMENT = "digits_dass_vs_random"
METHODS = ("random", "dass")


def _overrides(run_dir: Path, method: str, *, seed: int, timeout_s: float,
               threads: int) -> list[str]:
    return [f"+experiment={EXPERIMENT}", f"hydra.run.dir={run_dir / method}",
            f"tracking.uri=sqlite:///{run_dir / 'mlflow.db'}", f"seed={seed}",
            f"search.timeout_s={timeout_s}", f"train.threads={threads}",
            "search.compare=[]", f"search.strategy={method}"]


def _dense_first(run_dir: Path, overrides: list[str]) -> None:
    """Trains the shared dense baseline before the clocks start (dense.json per method)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from sparsearch.config import register_configs
    from sparsearch.search.report import dense_baseline
    from sparsearch.search.setup import prepare_search

    register_configs()
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = OmegaConf.to_object(compose("config", overrides=[
            o for o in overrides if not o.startswith("hydra.")]))
    first = run_dir / METHODS[0]
    first.mkdir(parents=True, exist_ok=True)
    dense = dense_baseline(prepare_search(cfg, first))
    for method in METHODS[1:]:
        (run_dir / method).mkdir(parents=True, exist_ok=True)
        (run_dir / method / "dense.json").write_text(json.dumps(dense, indent=1))


def _curve(run_dir: Path, method: str) -> dict[str, Any]:
    """(seconds since the strategy's parent run started, hypervolume) after each trial."""
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    from sparsearch.pareto import hypervolume

    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(EXPERIMENT)
    # Filtered in the query: a fast machine makes over a thousand trial runs per seed.
    parent = next(r for r in client.search_runs(
        [exp.experiment_id], filter_string="tags.`sparsearch.role` = 'search'")
        if r.data.params.get("strategy") == method)
    t0 = parent.info.start_time / 1000.0
    study = optuna.load_study(study_name=EXPERIMENT,
                              storage=f"sqlite:///{run_dir / method / 'optuna.db'}")
    done = sorted((t for t in study.get_trials(deepcopy=False)
                   if t.state == TrialState.COMPLETE), key=lambda t: t.datetime_complete)
    points, curve = [], []
    for t in done:
        points.append(list(t.values))
        curve.append((t.datetime_complete.timestamp() - t0,
                      hypervolume(points, [0.0, 1.0], ["max", "min"])))
    return {"curve": curve, "wall_s": parent.data.metrics.get("search_wall_s")}


def _front_test_hypervolume(run_dir: Path, method: str) -> float:
    """Hypervolume of the final front (chosen on val) with its test accuracies instead.

    Many evaluations can pick val-lucky subnets; the held-out test split shows how much of
    a front's val hypervolume is real.
    """
    from sparsearch.pareto import hypervolume

    report = json.loads((run_dir / method / "pareto.json").read_text())
    points = [[e["metrics"]["test_accuracy"], e["metrics"]["density"]] for e in report["front"]]
    return hypervolume(points, [0.0, 1.0], ["max", "min"])


def _at(curve: list[tuple[float, float]], t: float) -> tuple[float, int]:
    """Hypervolume and number of trials completed by time t."""
    seen = [hv for s, hv in curve if s <= t]
    return (seen[-1] if seen else 0.0), len(seen)


def _reach(curve: list[tuple[float, float]], target: float) -> float | None:
    return next((s for s, hv in curve if hv >= target - 1e-12), None)


def _start(run_dir: Path, method: str, *, seed: int, budgets: list[float],
           threads: int) -> subprocess.Popen:
    overrides = _overrides(run_dir, method, seed=seed, timeout_s=max(budgets), threads=threads)
    with (run_dir / f"{method}.log").open("w") as log:  # the child keeps its own handle
        return subprocess.Popen([sys.executable, "-m", "sparsearch", *overrides], stdout=log,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _finish(run_dir: Path, method: str, proc: subprocess.Popen, seed: int) -> None:
    # Exit 3: DASS completed no subnet in the budget, an empty front (hypervolume 0).
    if proc.wait() not in (0, 3):
        tail = (run_dir / f"{method}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"seed {seed} {method} failed:\n{tail}")


def run_seed(out_dir: Path, *, seed: int, budgets: list[float], threads: int,
             parallel: bool) -> dict[str, Any]:
    run_dir = out_dir / f"seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    order = list(METHODS) if seed % 2 == 0 else list(reversed(METHODS))
    _dense_first(run_dir, _overrides(run_dir, METHODS[0], seed=seed, timeout_s=1.0,
                                     threads=threads))
    load_before = os.getloadavg()
    started = time.time()
    if parallel:
        # Both at once, one process each with `threads` threads: the same machine state for
        # both (a load spike hits both), in half the time; needs 2 x threads free cores.
        procs = {m: _start(run_dir, m, seed=seed, budgets=budgets, threads=threads)
                 for m in METHODS}
        for method, proc in procs.items():
            _finish(run_dir, method, proc, seed)
        order = ["parallel"]
    else:
        for method in order:
            _finish(run_dir, method, _start(run_dir, method, seed=seed, budgets=budgets,
                                            threads=threads), seed)
    result: dict[str, Any] = {"seed": seed, "order": order, "load_before": load_before,
                              "load_after": os.getloadavg(),
                              "total_s": time.time() - started, "methods": {}}
    curves = {m: _curve(run_dir, m) for m in METHODS}
    target = _at(curves["random"]["curve"], max(budgets))[0]
    for method, data in curves.items():
        per_budget = {}
        for b in budgets:
            hv, n = _at(data["curve"], b)
            per_budget[str(int(b))] = {"hypervolume": hv, "trials": n}
        result["methods"][method] = {
            "budgets": per_budget, "curve": data["curve"],
            "time_to_random_final_s": _reach(data["curve"], target),
            "final_front_test_hypervolume": _front_test_hypervolume(run_dir, method)}
    result["random_final_hypervolume"] = target
    return result


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f}"


def summarise(results: list[dict[str, Any]], budgets: list[float]) -> dict[str, Any]:
    summary: dict[str, Any] = {"budgets": {}, "time_to_random_final_s": {}}
    for b in budgets:
        key = str(int(b))
        row = {}
        for method in METHODS:
            hvs = [r["methods"][method]["budgets"][key]["hypervolume"] for r in results]
            trials = [r["methods"][method]["budgets"][key]["trials"] for r in results]
            row[method] = {"hypervolume_mean": statistics.mean(hvs), "hypervolumes": hvs,
                           "trials_mean": statistics.mean(trials)}
        row["dass_ahead_every_seed"] = all(
            r["methods"]["dass"]["budgets"][key]["hypervolume"]
            > r["methods"]["random"]["budgets"][key]["hypervolume"] for r in results)
        summary["budgets"][key] = row
    for method in METHODS:
        summary["time_to_random_final_s"][method] = [
            r["methods"][method]["time_to_random_final_s"] for r in results]
    summary["final_front_test_hypervolume"] = {
        m: [r["methods"][m]["final_front_test_hypervolume"] for r in results] for m in METHODS}
    dass_times = summary["time_to_random_final_s"]["dass"]
    summary["dass_reaches_random_final_in_third"] = all(
        t is not None and t <= max(budgets) / 3 for t in dass_times)
    return summary


def print_table(results: list[dict[str, Any]], summary: dict[str, Any],
                budgets: list[float]) -> None:
    print(f"\nDASS vs random search, digits_mlp, {len(results)} seed(s): hypervolume "
          f"(val accuracy max, density min; reference (0, 1)) by wall-clock budget")
    print(f"{'budget s':>9} {'random HV':>20} {'dass HV':>20} {'trials r/d':>11} "
          f"{'dass ahead (all seeds)':>23}")
    for b in budgets:
        key = str(int(b))
        row = summary["budgets"][key]
        hv_r = [r["methods"]["random"]["budgets"][key]["hypervolume"] for r in results]
        hv_d = [r["methods"]["dass"]["budgets"][key]["hypervolume"] for r in results]
        trials = f"{row['random']['trials_mean']:.0f}/{row['dass']['trials_mean']:.0f}"
        print(f"{b:>9.0f} {_mean_std(hv_r):>20} {_mean_std(hv_d):>20} {trials:>11} "
              f"{str(row['dass_ahead_every_seed']):>23}")
    print(f"\ntime to reach random search's hypervolume at {max(budgets):.0f} s (per seed):")
    for method in METHODS:
        times = summary["time_to_random_final_s"][method]
        text = ", ".join("never" if t is None else f"{t:.0f} s" for t in times)
        print(f"  {method:<7} {text}")
    print(f"dass reaches it within a third of the budget on every seed: "
          f"{summary['dass_reaches_random_final_in_third']}")
    print(f"\nfinal fronts ({max(budgets):.0f} s) scored with their test accuracy:")
    for method in METHODS:
        print(f"  {method:<7} {_mean_std(summary['final_front_test_hypervolume'][method])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=float, nargs="+", default=[60.0, 180.0, 600.0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per trial and supernet (the same for both)")
    parser.add_argument("--parallel", action="store_true",
                        help="run both strategies at once (needs 2 x threads free cores)")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/dass_vs_random.json"))
    parser.add_argument("--work-dir", type=Path, default=Path("outputs/bench/dass_vs_random"))
    args = parser.parse_args()
    budgets = sorted(args.budgets)
    results = []
    for seed in args.seeds:
        print(f"seed {seed}: random and dass, {max(budgets):.0f} s each ...", flush=True)
        results.append(run_seed(args.work_dir.resolve(), seed=seed, budgets=budgets,
                                threads=args.threads, parallel=args.parallel))
        summary = summarise(results, budgets)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"budgets": budgets, "seeds": args.seeds,
                                        "threads": args.threads, "parallel": args.parallel,
                                        "summary": summary,
                                        "results": results}, indent=1))
    print_table(results, summary, budgets)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
